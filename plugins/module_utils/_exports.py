# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NFS exports for the nfs_export module: validate, render and parse exports(5) lines, and keep one managed
file per export under /etc/exports.d/ in the state asked for, re-exporting only the entries that changed."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tempfile
import typing as t

from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError

EXPORTS_FILE = "/etc/exports"
EXPORTS_DIR = "/etc/exports.d"
MANAGED_HEADER = "# Managed by ferry.runc.nfs_export: edits here are overwritten; other exports live in other files."
NEW_DIRECTORY_MODE = 0o700

# Options taken as they are, and the pairs that contradict each other (the kernel would use the last one).
FLAG_OPTIONS = frozenset((
    "rw", "ro", "sync", "async", "secure", "insecure", "wdelay", "no_wdelay", "hide", "nohide", "crossmnt",
    "nocrossmnt", "subtree_check", "no_subtree_check", "root_squash", "no_root_squash", "all_squash",
    "no_all_squash", "secure_locks", "insecure_locks", "auth_nlm", "no_auth_nlm", "mountpoint", "mp",
    "nordirplus", "pnfs", "no_pnfs", "security_label", "acl", "no_acl",
))
CONFLICT_GROUPS = (
    frozenset(("rw", "ro")),
    frozenset(("sync", "async")),
    frozenset(("secure", "insecure")),
    frozenset(("wdelay", "no_wdelay")),
    frozenset(("hide", "nohide", "crossmnt", "nocrossmnt")),
    frozenset(("subtree_check", "no_subtree_check")),
    frozenset(("root_squash", "no_root_squash")),
    frozenset(("all_squash", "no_all_squash")),
    frozenset(("secure_locks", "insecure_locks", "auth_nlm", "no_auth_nlm")),
    frozenset(("pnfs", "no_pnfs")),
    frozenset(("acl", "no_acl")),
    frozenset(("mountpoint", "mp")),
)
SEC_FLAVORS = frozenset(("sys", "krb5", "krb5i", "krb5p"))
UUID_FSID = re.compile(r"^[0-9a-fA-F](?:[-:]?[0-9a-fA-F]){31}$")
# Characters that would end an option inside "client(opt,opt)" or the line.
OPTION_BREAKERS = re.compile(r"[\s,()#\"\\]")
REFERRAL = re.compile(r"^/[^@:]*@[^:+]+(?:\+[^:+]+)*(?::/[^@:]*@[^:+]+(?:\+[^:+]+)*)*$")
HOST_PATTERN = re.compile(r"^[A-Za-z0-9*?\[\]]([A-Za-z0-9*?\[\]._-]*[A-Za-z0-9*?\[\]])?$")
NETGROUP = re.compile(r"^@[A-Za-z0-9_][A-Za-z0-9_.-]*$")
WILDCARDS = frozenset("*?[]")
MAX_ID = 2 ** 32 - 2


class ExportsError(FerryError):
    """A bad parameter, an unreadable exports file or a failed exportfs."""


class Client(t.NamedTuple):
    """One validated client: its exports(5) spelling, its exportfs command-line spelling and whether it is everyone."""

    spec: str
    cli: str
    world: bool


class Entry(t.NamedTuple):
    """One client of an export line with its option list, both as written in the file."""

    client: str
    options: str


class Plan(t.NamedTuple):
    """What reaching the asked state takes: the managed file's text before and after, and the exportfs argvs."""

    before: str
    after: str
    commands: list


# ---- validation ------------------------------------------------------------------------------------------------


def validate_path(path: str) -> str:
    """Return the export path when it is absolute, normalized and printable."""
    if not path.startswith("/") or os.path.normpath(path) != path or path.startswith("//"):
        raise ExportsError(f"path {path!r} must be an absolute, normalized path (no trailing slash, '.' or '..')")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise ExportsError(f"path {path!r} holds a control character")
    return path


def parse_client(spec: str) -> Client:
    """Validate one client spec: host name or wildcard, IPv4/IPv6 address or network, @netgroup or '*'."""
    if spec.startswith("@"):
        if not NETGROUP.match(spec):
            raise ExportsError(f"client {spec!r} is not a valid @netgroup name")
        return Client(spec, spec, False)
    if "/" in spec:
        return network_client(spec)
    address = ip_address_or_none(spec)
    if address is not None:
        return address_client(address)
    return host_client(spec)


def ip_address_or_none(spec: str) -> t.Any:
    """Return the IP address spec holds, or None when it is no address."""
    try:
        return ipaddress.ip_address(spec)
    except ValueError:
        return None


def address_client(address: t.Any) -> Client:
    """A single IPv4 or IPv6 address; exportfs wants IPv6 in brackets on its command line."""
    text = str(address)
    return Client(text, f"[{text}]" if address.version == 6 else text, False)


def network_client(spec: str) -> Client:
    """An IPv4 or IPv6 network (address/length, or address/netmask for IPv4), with no host bits set."""
    try:
        network = ipaddress.ip_network(spec, strict=True)
    except ValueError as error:
        raise ExportsError(f"client {spec!r} is not a valid IP network: {error}") from None
    text = str(network)
    return Client(text, f"[{text}]" if network.version == 6 else text, network.prefixlen == 0)


def host_client(spec: str) -> Client:
    """A host name or a wildcard pattern such as *.example.org or node[0-9]."""
    if not HOST_PATTERN.match(spec) or ".." in spec or spec.count("[") != spec.count("]"):
        raise ExportsError(
            f"client {spec!r} is neither a host name or wildcard, an IP address or network, an @netgroup nor '*'"
        )
    if "*" in spec and set(spec) <= WILDCARDS | {"."}:
        return Client(spec, spec, True)
    labels = spec.split(".")
    if any(label.isdigit() for label in labels) and all(label.isdigit() or set(label) <= WILDCARDS for label in labels):
        if set(spec) & WILDCARDS:
            raise ExportsError(f"client {spec!r}: wildcards do not match IP addresses; give a network such as 10.0.0.0/24")
        raise ExportsError(f"client {spec!r} is not a valid IP address")
    return Client(spec, spec, False)


def parse_clients(specs: list[str], allow_world: bool, path: str) -> list[Client]:
    """Validate every client, refuse duplicates, and refuse world-wide clients unless allow_world."""
    if not specs:
        raise ExportsError(f"export of {path} needs at least one client")
    clients = [parse_client(spec) for spec in specs]
    seen: set[str] = set()
    for client in clients:
        if client.spec in seen:
            raise ExportsError(f"client {client.spec!r} is listed twice")
        seen.add(client.spec)
    world = [client.spec for client in clients if client.world]
    if world and not allow_world:
        raise ExportsError(
            f"refusing to export {path} to every host (client {world[0]!r}): list the clients that need it, "
            "or set allow_world=true if the whole world really may mount it"
        )
    return clients


def validate_options(options: list[str]) -> str:
    """Check every option against the known ones and their values, refuse contradictions; return them joined."""
    if not options:
        raise ExportsError("options must not be empty: give at least sync or async and ro or rw")
    keys: set[str] = set()
    for option in options:
        key = check_option(option)
        if key in keys:
            raise ExportsError(f"option {key!r} is given twice")
        keys.add(key)
    for group in CONFLICT_GROUPS:
        clash = sorted(group & keys)
        if len(clash) > 1:
            raise ExportsError(f"options {' and '.join(clash)} contradict each other: keep one")
    return ",".join(options)


def check_option(option: str) -> str:
    """Validate one option; return its key (the option, or the part before '=')."""
    if not option or OPTION_BREAKERS.search(option):
        raise ExportsError(f"option {option!r} is empty or holds a blank, comma, parenthesis, quote, backslash or '#'")
    key, has_value, value = option.partition("=")
    if not has_value:
        if key not in FLAG_OPTIONS:
            raise ExportsError(f"option {option!r} is unknown (see exports(5))")
        return key
    check = VALUE_CHECKS.get(key)
    if check is None:
        raise ExportsError(f"option {option!r} is unknown or takes no value (see exports(5))")
    if not check(value):
        raise ExportsError(f"option {option!r} has an invalid value: {VALUE_HINTS[key]}")
    return key


def is_id(value: str) -> bool:
    """A uid or gid: a decimal number the kernel accepts."""
    return value.isdigit() and int(value) <= MAX_ID


def is_fsid(value: str) -> bool:
    """fsid=root, a small number, or a UUID of 32 hex digits with '-' or ':' between them."""
    return value == "root" or value.isdigit() or UUID_FSID.match(value) is not None


def is_sec_list(value: str) -> bool:
    """A colon-separated list of known security flavors."""
    flavors = value.split(":")
    return all(flavor in SEC_FLAVORS for flavor in flavors) and len(set(flavors)) == len(flavors)


VALUE_CHECKS: dict[str, t.Callable[[str], bool]] = {
    "anonuid": is_id,
    "anongid": is_id,
    "fsid": is_fsid,
    "sec": is_sec_list,
    "mountpoint": lambda value: value.startswith("/"),
    "mp": lambda value: value.startswith("/"),
    "refer": lambda value: REFERRAL.match(value) is not None,
    "replicas": lambda value: REFERRAL.match(value) is not None,
}
VALUE_HINTS = {
    "anonuid": f"a number from 0 to {MAX_ID}",
    "anongid": f"a number from 0 to {MAX_ID}",
    "fsid": "root, a number or a UUID of 32 hex digits (with - or : between them)",
    "sec": f"a colon-separated list of {', '.join(sorted(SEC_FLAVORS))}",
    "mountpoint": "an absolute path",
    "mp": "an absolute path",
    "refer": "path@host[+host][:path@host[+host]]",
    "replicas": "path@host[+host][:path@host[+host]]",
}


# ---- rendering and parsing -------------------------------------------------------------------------------------


def escape_path(path: str) -> str:
    """Spell a path for exports(5): blanks, quotes, backslashes and '#' as backslash and three octal digits."""
    return "".join(f"\\{ord(char):03o}" if char.isspace() or char in '"\\#' else char for char in path)


def render_line(path: str, entries: list[Entry]) -> str:
    """One exports(5) line: the path, then each client with its options."""
    return " ".join([escape_path(path)] + [f"{entry.client}({entry.options})" for entry in entries])


def render_managed_file(path: str, entries: list[Entry]) -> str:
    """The whole managed file: the header, the export it holds, and the export line."""
    return f"{MANAGED_HEADER}\n# export: {path}\n{render_line(path, entries)}\n"


def logical_lines(text: str) -> list[str]:
    """Join backslash-continued lines and drop comments and blank lines."""
    lines = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        content = strip_comment(line).strip()
        if content:
            lines.append(content)
    return lines


def strip_comment(line: str) -> str:
    """Cut a line at the first '#' outside double quotes."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def split_tokens(line: str) -> list[str]:
    """Split a line at blanks outside double quotes; drop the quotes and decode backslash-octal escapes."""
    tokens = re.findall(r'(?:"[^"]*"|[^\s"])+', line)
    return [re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), token.replace('"', "")) for token in tokens]


def parse_line(line: str) -> tuple[str, list[Entry]]:
    """Parse one logical exports(5) line into its path and entries; '-options' defaults apply to later clients."""
    path, *rest = split_tokens(line)
    defaults: list[str] = []
    entries = []
    for token in rest:
        if token.startswith("-"):
            defaults = [token[1:]]
            continue
        match = re.match(r"^([^(]*)(?:\(([^()]*)\))?$", token)
        if match is None:
            raise ExportsError(f"cannot parse client {token!r} of export {path}")
        options = ",".join(part for part in defaults + [match.group(2) or ""] if part)
        entries.append(Entry(match.group(1) or "*", options))
    return path, entries


def parse_exports(text: str) -> list[tuple[str, list[Entry]]]:
    """Parse an exports(5) file into (path, entries) pairs, one per logical line."""
    return [parse_line(line) for line in logical_lines(text)]


# ---- the managed file ------------------------------------------------------------------------------------------


def managed_file_name(path: str) -> str:
    """A file name per export path: readable, unique (a hash of the path) and ending in .exports as exportfs wants."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", path.strip("/"))[:80] or "root"
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:8]
    return f"ferry-runc.{slug}.{digest}.exports"


def read_text(file_path: str) -> str:
    """The file's text, or '' when it does not exist."""
    try:
        with open(file_path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        raise ExportsError(f"reading {file_path} failed: {error}") from None


def managed_entries(text: str, file_path: str, path: str) -> list[Entry]:
    """The entries of the managed file's text; refuse a file this module did not write."""
    if not text:
        return []
    if not text.startswith(MANAGED_HEADER + "\n"):
        raise ExportsError(f"refusing to overwrite {file_path}: it lacks the ferry.runc.nfs_export header")
    return [entry for line_path, line_entries in parse_exports(text) if line_path == path for entry in line_entries]


def write_atomically(module: t.Any, file_path: str, text: str) -> None:
    """Write text to a hidden temporary file beside file_path (exportfs skips dot files), then move it in place."""
    directory = os.path.dirname(file_path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".ferry-runc-", suffix=".tmp", dir=directory)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
    except OSError as error:
        raise ExportsError(f"writing {file_path} failed: {error}") from None
    module.atomic_move(temporary, file_path)


def other_exports_of(path: str, managed_file: str) -> list[str]:
    """The other export files (/etc/exports and /etc/exports.d/*.exports) that also export path."""
    candidates = [EXPORTS_FILE] + sorted(
        os.path.join(EXPORTS_DIR, name)
        for name in (os.listdir(EXPORTS_DIR) if os.path.isdir(EXPORTS_DIR) else [])
        if name.endswith(".exports") and not name.startswith(".")
    )
    found = []
    for candidate in candidates:
        if candidate == managed_file:
            continue
        try:
            paths = [split_tokens(line)[0] for line in logical_lines(read_text(candidate))]
        except ExportsError:
            continue
        if path in paths:
            found.append(candidate)
    return found


# ---- deciding and applying -------------------------------------------------------------------------------------


def exportfs_commands(exportfs: str, path: str, old: list[Entry], new: list[Entry]) -> list[list[str]]:
    """The narrowest exportfs calls from the old entries to the new ones (which share one option list): unexport
    the clients that went, export the new or changed ones. exportfs -o applies its options on top of the entry it
    reads from the export files, so the managed file must be written before these run."""
    new_clients = {entry.client for entry in new}
    gone = [cli_target(entry.client, path) for entry in old if entry.client not in new_clients]
    changed = [entry for entry in new if entry not in old]
    commands = []
    if gone:
        commands.append([exportfs, "-u"] + gone)
    if changed:
        commands.append([exportfs, "-o", changed[0].options] + [cli_target(entry.client, path) for entry in changed])
    return commands


def cli_target(client: str, path: str) -> str:
    """CLIENT:PATH as exportfs takes it on its command line (IPv6 in brackets, as it splits at the first colon)."""
    return f"{parse_client(client).cli}:{path}"


def plan_present(module: t.Any, path: str, clients: list[Client], options: str, file_path: str) -> Plan:
    """The plan for state=present: the file's new text and the exportfs calls for the entries that changed."""
    before = read_text(file_path)
    old = managed_entries(before, file_path, path)
    new = [Entry(client.spec, options) for client in clients]
    after = render_managed_file(path, new)
    if after == before:
        return Plan(before, after, [])
    return Plan(before, after, exportfs_commands(exportfs_path(module), path, old, new))


def plan_absent(module: t.Any, path: str, file_path: str) -> Plan:
    """The plan for state=absent: no managed file, and every client it held unexported."""
    before = read_text(file_path)
    old = managed_entries(before, file_path, path)
    if not before:
        return Plan(before, before, [])
    return Plan(before, "", exportfs_commands(exportfs_path(module), path, old, []))


def exportfs_path(module: t.Any) -> str:
    """exportfs from the NFS server package; check mode may run before that package is installed."""
    return module.get_bin_path("exportfs", required=not module.check_mode) or "exportfs"


def apply_file(module: t.Any, file_path: str, plan: Plan) -> None:
    """Write or remove the managed file as the plan says."""
    if plan.after:
        write_atomically(module, file_path, plan.after)
        return
    try:
        os.remove(file_path)
    except OSError as error:
        raise ExportsError(f"removing {file_path} failed: {error}") from None


def run_exportfs(module: t.Any, argv: list[str]) -> None:
    """Run one exportfs call. An unexport of an entry the kernel no longer has already reached its goal."""
    rc, out, err = module.run_command(argv, check_rc=False)
    problems = [line.strip() for line in (out + err).splitlines() if line.strip() and not is_already_unexported(argv, line)]
    if rc != 0 and problems:
        unexport = argv[1] == "-u"
        targets = " ".join(argv[2:] if unexport else argv[3:])
        raise ExportsError(f"{'unexport' if unexport else 'export'} of {targets} failed (exportfs rc={rc}): {' '.join(problems)}")


def is_already_unexported(argv: list[str], line: str) -> bool:
    """exportfs -u names the entries it could not find; for an unexport that is the state asked for."""
    return argv[1] == "-u" and re.match(r"^exportfs: Could not find '.*' to unexport\.$", line.strip()) is not None


def check_directory(path: str, create: bool) -> bool:
    """Whether the export directory exists; refuse a missing one without create, and a path through a symlink
    (exportfs exports the resolved path, so unexporting by the given path would miss it)."""
    if os.path.lexists(path) and os.path.realpath(path) != path:
        raise ExportsError(f"export path {path} resolves to {os.path.realpath(path)}: give the real path")
    exists = os.path.isdir(path)
    if not exists and os.path.lexists(path):
        raise ExportsError(f"export path {path} exists and is no directory")
    if not exists and not create:
        raise ExportsError(f"export directory {path} does not exist: create it or set create=true")
    return exists


def ensure_directory(module: t.Any, path: str, exists: bool) -> bool:
    """Create the export directory if missing, then set its owner, group and mode; return whether it changed."""
    if not exists:
        if module.check_mode:
            return True
        make_directory(path)
    params = module.params
    changed = module.set_owner_if_different(path, params["owner"], not exists)
    changed = module.set_group_if_different(path, params["group"], changed)
    return module.set_mode_if_different(path, params["mode"], changed)


def make_directory(path: str) -> None:
    """mkdir -p, with a private mode for the export directory itself."""
    try:
        os.makedirs(path, mode=NEW_DIRECTORY_MODE)
        os.chmod(path, NEW_DIRECTORY_MODE)
    except OSError as error:
        raise ExportsError(f"creating export directory {path} failed: {error}") from None


def diff_of(file_path: str, plan: Plan) -> dict[str, str]:
    """The before/after text of the managed file, as Ansible's diff mode shows it."""
    return {"before": plan.before, "after": plan.after, "before_header": file_path, "after_header": file_path}


def apply(module: t.Any, params: dict[str, t.Any]) -> dict[str, t.Any]:
    """Validate and plan (reading only), then, outside check mode, change the directory, the managed file and the
    kernel's export table in that order."""
    path = validate_path(params["path"])
    file_path = os.path.join(EXPORTS_DIR, managed_file_name(path))
    directory_changed = False
    if params["state"] == "present":
        clients = parse_clients(params["clients"] or [], params["allow_world"], path)
        options = validate_options(params["options"])
        exists = check_directory(path, params["create"])
        plan = plan_present(module, path, clients, options, file_path)
        warn_about_other_exports(module, path, file_path)
        directory_changed = ensure_directory(module, path, exists)
    else:
        plan = plan_absent(module, path, file_path)
    file_changed = plan.before != plan.after
    if file_changed and not module.check_mode:
        apply_file(module, file_path, plan)
        for argv in plan.commands:
            run_exportfs(module, argv)
    return {
        "changed": directory_changed or file_changed,
        "file": file_path,
        "commands": plan.commands,
        "diff": diff_of(file_path, plan),
    }


def warn_about_other_exports(module: t.Any, path: str, file_path: str) -> None:
    """Say when another file exports the same path: its clients and options apply too, untouched by this module."""
    for other in other_exports_of(path, file_path):
        module.warn(f"{path} is also exported by {other}; those entries stay in effect and are not managed here")
