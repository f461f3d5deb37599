# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What about a running container stops it from surviving a move (its stdio, the host paths it binds), and how much
memory it holds."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

STDIO = ("stdin", "stdout", "stderr")


def stdio_problem(descriptor: int, target: str) -> str | None:
    """Why one of init's stdio descriptors cannot move, from its /proc/PID/fd link: a pipe or socket ends with the
    process that held its other end here (the restored copy's next write would kill it), a terminal stays behind."""
    name = STDIO[descriptor]
    if target.startswith(("pipe:", "socket:")):
        kind = target.split(":", 1)[0]
        return f"its {name} is a {kind} to a process on this host, which does not move with it; start it with {name} on /dev/null or a file in the bundle"
    if target.startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
        return f"its {name} is a terminal ({target}), which does not move with it; start it detached with stdio on /dev/null or a file in the bundle"
    return None


def stdio_problems(init_pid: int, proc: str = "/proc") -> list[str]:
    problems = []
    for descriptor in range(len(STDIO)):
        try:
            target = os.readlink(os.path.join(proc, str(init_pid), "fd", str(descriptor)))
        except OSError:
            continue
        problem = stdio_problem(descriptor, target)
        if problem:
            problems.append(problem)
    return problems


def bind_sources(config: Mapping[str, Any]) -> list[str]:
    """The host paths a container's config.json binds into it (they must exist at the same path on the destination)."""
    sources = []
    for mount in config.get("mounts") or []:
        options = mount.get("options") or []
        if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            sources.append(mount["source"])
    return sources


def read_config(bundle: str) -> dict:
    with open(os.path.join(bundle, "config.json"), encoding="utf-8") as handle:
        return json.load(handle)


def migration_problems(state: Mapping[str, Any], proc: str = "/proc") -> list[str]:
    """Why this container, as `runc state` describes it, cannot be moved: empty when it can."""
    if state.get("status") not in ("running", "paused") or not state.get("pid"):
        return []
    return stdio_problems(state["pid"], proc)


def container_details(state: Mapping[str, Any], proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> dict[str, Any]:
    """What an evacuation's placement needs of one container as `runc state` describes it: why it cannot move, its
    memory, the host paths it binds and its annotations (from its bundle's config.json, which the host wrote)."""
    details: dict[str, Any] = {"problems": migration_problems(state, proc), "memory_bytes": None, "bind_sources": [], "annotations": {}}
    if state.get("status") in ("running", "paused") and state.get("pid"):
        details["memory_bytes"] = cgroup_memory_bytes(state["pid"], proc, cgroup_root)
    try:
        config = read_config(state["bundle"])
    except (OSError, ValueError) as exc:
        details["problems"].append(f"its bundle's config.json cannot be read ({exc})")
        return details
    details["bind_sources"] = bind_sources(config)
    details["annotations"] = config.get("annotations") or {}
    return details


def memory_available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """The memory the kernel says new work can use without swapping (MemAvailable), None when it does not say."""
    try:
        with open(meminfo, encoding="utf-8") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def missing_paths(paths: list[str]) -> list[str]:
    return [path for path in paths if not os.path.exists(path)]


def cgroup_memory_bytes(pid: int, proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """What CRIU dumps of the memory of the container whose process pid is: its cgroup's anonymous and shared memory
    (cgroup v2), or None when the host does not say."""
    try:
        with open(os.path.join(proc, str(pid), "cgroup"), encoding="utf-8") as handle:
            paths = [line.rstrip("\n").split(":", 2)[2] for line in handle if line.startswith("0::")]
        if not paths:
            return None
        with open(os.path.join(cgroup_root, paths[0].lstrip("/"), "memory.stat"), encoding="utf-8") as handle:
            fields = dict(line.split() for line in handle if line.count(" ") == 1)
        return int(fields["anon"]) + int(fields.get("shmem", 0))
    except (OSError, KeyError, ValueError, IndexError):
        return None
