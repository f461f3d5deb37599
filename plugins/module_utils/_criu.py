# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRIU on the target: its version, `criu check`, the features that decide a migration strategy, log excerpts, the
CRIU processes of a restore and the mounts a killed CRIU leaves behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

# `criu check --feature NAME` probes, by the name this collection reports them under.
FEATURE_PROBES = {
    "mem_dirty_track": "mem_dirty_track",  # soft-dirty bits: pre-dumps (pre-copy)
    "uffd": "uffd",  # userfaultfd: lazy pages (post-copy)
    "uffd_noncoop": "uffd-noncoop",  # userfaultfd events of non-cooperative processes: lazy pages of forking tasks
    "network_lock_nftables": "network_lock_nftables",  # CRIU can lock the network with nftables
}

# CRIU marks its own errors "Error (file:line): ..."; the other words catch plugin, RPC and summary lines.
LOG_PROBLEM = re.compile(r"Error|\berr\b|FAILED|Can't|[Ff]ail")
LOG_CONTEXT_LINES = 1
LOG_EXCERPT_LINES = 20


def criu_version(module, criu_path: str) -> str:
    """Return CRIU's version ("3.17.1") from `criu --version`."""
    output = _run(module, [criu_path, "--version"], "reading the CRIU version")
    match = re.search(r"^Version:\s*(\S+)", output, re.MULTILINE)
    if not match:
        module.fail_json(msg=f"reading the CRIU version failed: unexpected output of {criu_path} --version: {output!r}")
    return match.group(1)


def criu_check(module, criu_path: str) -> dict:
    """Run `criu check` and return whether it passed and what it said."""
    rc, out, err = module.run_command([criu_path, "check"], check_rc=False)
    return {"passed": rc == 0, "output": (out + err).strip()}


def feature_supported(module, criu_path: str, feature: str) -> bool:
    """Whether `criu check --feature FEATURE` reports the feature as supported."""
    rc, _out, _err = module.run_command([criu_path, "check", "--feature", feature], check_rc=False)
    return rc == 0


def probe_features(module, criu_path: str) -> dict[str, bool]:
    """Return every probe of FEATURE_PROBES, plus network_lock_iptables (CRIU's default network lock)."""
    features = {name: feature_supported(module, criu_path, feature) for name, feature in FEATURE_PROBES.items()}
    features["network_lock_iptables"] = module.get_bin_path("iptables-restore") is not None
    return features


def log_excerpt(path: str, max_lines: int = LOG_EXCERPT_LINES) -> list[str]:
    """Return the lines of a CRIU log that explain a failure, each after LOG_CONTEXT_LINES line(s) of context.

    The last max_lines such lines are kept: CRIU ends a failed run with its summary ("Dumping FAILED.").
    A missing or unreadable log gives an empty list.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines = log.read().splitlines()
    except OSError:
        return []
    wanted = set()
    for number, line in enumerate(lines):
        if LOG_PROBLEM.search(line):
            wanted.update(range(max(0, number - LOG_CONTEXT_LINES), number + 1))
    return [lines[number] for number in sorted(wanted)][-max_lines:]


def restore_criu_pids(work_path: str, proc: str = "/proc") -> list[int]:
    """The CRIU processes that `runc restore --work-path WORK_PATH` started: children named criu of a process whose
    command line holds both "restore" and work_path."""
    pids = []
    for entry in os.listdir(proc):
        try:
            with open(os.path.join(proc, entry, "stat"), encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
            name, after_name = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 1:].split()
            if name != "criu":
                continue
            with open(os.path.join(proc, after_name[1], "cmdline"), "rb") as handle:
                parent_args = handle.read().decode("utf-8", "replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if "restore" in parent_args and work_path in parent_args:
            pids.append(int(entry))
    return pids


def mount_points_under(path: str, mountinfo: str) -> list[str]:
    """The mount points strictly below path in a /proc/PID/mountinfo text, deepest first (the order to unmount)."""
    prefix = path.rstrip("/") + "/"
    points = [_unescape_mount_point(line.split()[4]) for line in mountinfo.splitlines() if len(line.split()) > 4]
    return sorted((point for point in points if point.startswith(prefix)), key=len, reverse=True)


def _unescape_mount_point(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _run(module, argv: list[str], step: str) -> str:
    rc, out, err = module.run_command(argv, check_rc=False)
    if rc != 0:
        module.fail_json(msg=f"{step} failed: {' '.join(argv)} exited with {rc}: {(err or out).strip()}")
    return out


# TLS for CRIU's page stream


RUNC_CONFIG = "/etc/criu/runc.conf"
RUNC_CONFIG_MARKER = "# ferry.runc: TLS of a running migration; removed when it ends"
TLS_OPTIONS = ("tls_cacert", "tls_cert", "tls_key")
# A tmpfs: a key that a killed module could not remove is gone at the next boot.
TLS_FILES_PARENT = "/run"


@contextlib.contextmanager
def tls_files(params: dict) -> Iterator[dict[str, str]]:
    """CRIU reads its certificate and key from files: write the PEM texts of the TLS options into a new root-only
    directory for the duration of the block. Yields the paths by option name, or {} without TLS."""
    if not params.get("tls_cert"):
        yield {}
        return
    directory = tempfile.mkdtemp(prefix="ferry-tls-", dir=TLS_FILES_PARENT)
    try:
        paths = {}
        for option in TLS_OPTIONS:
            paths[option] = os.path.join(directory, option + ".pem")
            with os.fdopen(os.open(paths[option], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(params[option])
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def tls_args(paths: dict[str, str]) -> list[str]:
    """CRIU's TLS options for a page server or lazy-pages daemon that this collection starts itself."""
    if not paths:
        return []
    return ["--tls", "--tls-cacert", paths["tls_cacert"], "--tls-cert", paths["tls_cert"], "--tls-key", paths["tls_key"]]


def runc_config_with_tls(current: str, paths: dict[str, str]) -> str:
    """runc passes no TLS options to CRIU: they go into runc's CRIU configuration file, after what is there already
    (less any TLS section an interrupted migration left behind)."""
    kept = runc_config_without_tls(current)
    lines = [RUNC_CONFIG_MARKER, "tls", f"tls-cacert {paths['tls_cacert']}", f"tls-cert {paths['tls_cert']}", f"tls-key {paths['tls_key']}"]
    return kept + ("\n" if kept and not kept.endswith("\n") else "") + "\n".join(lines) + "\n"


def runc_config_without_tls(current: str) -> str:
    return current.split(RUNC_CONFIG_MARKER, 1)[0]
