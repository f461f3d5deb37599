# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRIU on the target: its version, `criu check`, the features that decide a migration strategy, log excerpts, the
CRIU processes of a restore and the mounts a killed CRIU leaves behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Mapping

from ansible_collections.ferry.runc.plugins.module_utils._commands import alive, own_identity
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError

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


def criu_version(runner, criu_path: str) -> str:
    """Return CRIU's version ("3.17.1") from `criu --version`."""
    step = "reading the CRIU version"
    rc, out, err = runner.run_command([criu_path, "--version"], check_rc=False)
    match = re.search(r"^Version:\s*(\S+)", out, re.MULTILINE)
    if rc != 0 or not match:
        raise CommandError(f"{criu_path} --version exited with {rc}: {(err or out).strip()}", step=step)
    return match.group(1)


def criu_check(runner, criu_path: str) -> dict:
    """Run `criu check` and return whether it passed and what it said."""
    rc, out, err = runner.run_command([criu_path, "check"], check_rc=False)
    return {"passed": rc == 0, "output": (out + err).strip()}


def feature_supported(runner, criu_path: str, feature: str) -> bool:
    """Whether `criu check --feature FEATURE` reports the feature as supported."""
    rc, _out, _err = runner.run_command([criu_path, "check", "--feature", feature], check_rc=False)
    return rc == 0


CPUINFO_IMAGE = "cpuinfo.img"


def cpuinfo_dump(runner, criu_path: str, directory: str, step: str) -> None:
    """Write this host's CPU features into directory (cpuinfo.img), for another host's cpuinfo_check."""
    rc, out, err = runner.run_command([criu_path, "cpuinfo", "dump", "-D", directory], check_rc=False)
    if rc != 0:
        raise CommandError(f"criu cpuinfo dump failed: {(err or out).strip()}", step=step)


def cpuinfo_check(runner, criu_path: str, directory: str) -> dict:
    """Whether this CPU has every feature of the one whose cpuinfo.img is in directory, and what CRIU said."""
    rc, out, err = runner.run_command([criu_path, "cpuinfo", "check", "-D", directory], check_rc=False)
    return {"passed": rc == 0, "output": (err or out).strip()}


def probe_features(runner, criu_path: str) -> dict[str, bool]:
    """Return every probe of FEATURE_PROBES, plus network_lock_iptables (CRIU's default network lock)."""
    features = {name: feature_supported(runner, criu_path, feature) for name, feature in FEATURE_PROBES.items()}
    features["network_lock_iptables"] = runner.get_bin_path("iptables-restore") is not None
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


# TLS for CRIU's page stream


TLS_OPTIONS = ("tls_cacert", "tls_cert", "tls_key")
# A tmpfs: a key that a killed agent could not remove is gone at the next boot.
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


def tls_config_lines(paths: dict[str, str]) -> list[str]:
    """The same for the CRIU that runc starts: runc passes no TLS options, CRIU reads them from runc's config file."""
    return ["tls", f"tls-cacert {paths['tls_cacert']}", f"tls-cert {paths['tls_cert']}", f"tls-key {paths['tls_key']}"]


# runc's CRIU configuration file (runc 1.1 hands it to every CRIU it starts, which reads it after runc's own options)

RUNC_CONFIG = "/etc/criu/runc.conf"
RUNC_CONFIG_LOCK = "/run/ferry-runc/criu-config.lock"
# Restored tasks stay stopped (SIGSTOP before their first instruction) until the receiver lets them run: the hold.
HOLD_LINES = ("leave-stopped",)
SECTION_BEGIN = "# ferry.runc {name} (owner {pid} {start}): begin; removed when that migration's agent ends"
SECTION_BEGIN_PATTERN = re.compile(r"^# ferry\.runc (?P<name>.+) \(owner (?P<pid>\d+) (?P<start>\d+|None)\): begin;")
SECTION_END = "# ferry.runc {name}: end"


def config_with_section(current: str, name: str, lines: Iterable[str], owner: Mapping[str, Any]) -> str:
    """current with the named section (replacing one of that name an interrupted run left), after everything else."""
    kept = config_without_sections(current, lambda found, _owner: found == name)
    section = [SECTION_BEGIN.format(name=name, pid=owner["pid"], start=owner["start_time"]), *lines, SECTION_END.format(name=name)]
    return kept + ("\n" if kept and not kept.endswith("\n") else "") + "\n".join(section) + "\n"


def config_without_sections(current: str, drop: Callable[[str, dict], bool]) -> str:
    """current without the sections for which drop(name, owner) is true."""
    kept, dropping_until = [], None
    for line in current.splitlines(keepends=True):
        text = line.rstrip("\n")
        begin = SECTION_BEGIN_PATTERN.match(text)
        if dropping_until is None and begin:
            owner = {"pid": int(begin["pid"]), "start_time": None if begin["start"] == "None" else int(begin["start"])}
            if drop(begin["name"], owner):
                dropping_until = SECTION_END.format(name=begin["name"])
                continue
        if dropping_until is not None:
            if text == dropping_until:
                dropping_until = None
            continue
        kept.append(line)
    return "".join(kept)


def foreign_config_problems() -> list[str]:
    """What in runc's CRIU configuration, outside this collection's sections, would break a migration: leave-stopped
    makes every final dump leave the tasks stopped, which a rollback's resume does not undo."""
    try:
        with open(RUNC_CONFIG, encoding="utf-8") as handle:
            foreign = config_without_sections(handle.read(), lambda _name, _owner: True)
    except FileNotFoundError:
        return []
    if any(line.split()[:1] == ["leave-stopped"] for line in foreign.splitlines()):
        return [f"{RUNC_CONFIG} sets leave-stopped, which would leave the container stopped after every dump; remove it"]
    return []


@contextlib.contextmanager
def config_lock(exclusive: bool) -> Iterator[None]:
    """Hold the host's lock on runc's CRIU configuration: exclusive to change it or while a hold section is in it
    (another migration's final dump must not read leave-stopped), shared for a final dump."""
    os.makedirs(os.path.dirname(RUNC_CONFIG_LOCK), mode=0o700, exist_ok=True)
    descriptor = os.open(RUNC_CONFIG_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)


def set_config_section(name: str, lines: Iterable[str] | None, owner: Mapping[str, Any]) -> None:
    """Add (lines) or take out (None) this collection's named section of runc's CRIU configuration file, keeping what
    others put there and dropping the sections of agents that died (a stale leave-stopped would hold every later
    restore, and stop every later dump's tasks); the caller holds config_lock(exclusive=True)."""
    try:
        with open(RUNC_CONFIG, encoding="utf-8") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = ""
    wanted = config_without_sections(current, lambda found, found_owner: found == name or not alive(found_owner))
    if lines is not None:
        wanted = config_with_section(wanted, name, lines, owner)
    if wanted == current:
        return
    if not wanted:
        os.unlink(RUNC_CONFIG)
        return
    os.makedirs(os.path.dirname(RUNC_CONFIG), mode=0o755, exist_ok=True)
    with open(RUNC_CONFIG + ".ferry-tmp", "w", encoding="utf-8") as handle:
        handle.write(wanted)
    os.replace(RUNC_CONFIG + ".ferry-tmp", RUNC_CONFIG)


@contextlib.contextmanager
def added_config_section(name: str, lines: Iterable[str]) -> Iterator[None]:
    """runc's CRIUs read this section while the block runs (the lock is taken only to change the file)."""
    owner = own_identity()
    with config_lock(exclusive=True):
        set_config_section(name, lines, owner)
    try:
        yield
    finally:
        with config_lock(exclusive=True):
            set_config_section(name, None, owner)


@contextlib.contextmanager
def exclusive_config_section(name: str, lines: Iterable[str]) -> Iterator[None]:
    """The same, and no other migration's CRIU on this host starts a dump or restore while the block runs."""
    owner = own_identity()
    with config_lock(exclusive=True):
        set_config_section(name, lines, owner)
        try:
            yield
        finally:
            set_config_section(name, None, owner)
