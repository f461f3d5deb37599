"""How much memory a container holds (_inspect.cgroup_memory_bytes), read from its cgroup; what a placement needs of
each container (container_details) and of the host (memory_available_bytes)."""

from __future__ import annotations

from pathlib import Path

import json
import os

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._inspect import cgroup_memory_bytes, container_details, memory_available_bytes

STAT = "anon 8192\nfile 4096\nshmem 4096\nkernel 100\n"


def host(tmp_path: Path, cgroup: str, stat: str | None) -> tuple[str, str]:
    (tmp_path / "proc/42").mkdir(parents=True)
    (tmp_path / "proc/42/cgroup").write_text(cgroup)
    if stat is not None:
        (tmp_path / "cgroup/system.slice/runc-c1.scope").mkdir(parents=True)
        (tmp_path / "cgroup/system.slice/runc-c1.scope/memory.stat").write_text(stat)
    return str(tmp_path / "proc"), str(tmp_path / "cgroup")


@pytest.mark.parametrize(
    "cgroup, stat, expected",
    [
        ("0::/system.slice/runc-c1.scope\n", STAT, 8192 + 4096),
        ("0::/system.slice/runc-c1.scope\n", "anon 8192\n", 8192),
        ("1:name=systemd:/x\n", STAT, None),
        ("0::/system.slice/runc-c1.scope\n", None, None),
        ("0::/system.slice/runc-c1.scope\n", "file 4096\n", None),
    ],
    ids=["anonymous and shared", "no shared memory", "cgroup v1 only", "no memory.stat", "no anon line"],
)
def test_the_memory_is_the_cgroups_anonymous_and_shared_memory_or_none(tmp_path, cgroup, stat, expected):
    proc, cgroup_root = host(tmp_path, cgroup, stat)
    assert cgroup_memory_bytes(42, proc=proc, cgroup_root=cgroup_root) == expected


def test_a_process_that_is_gone_has_no_memory(tmp_path):
    assert cgroup_memory_bytes(42, proc=str(tmp_path), cgroup_root=str(tmp_path)) is None


def test_details_name_the_stdio_problem_the_memory_the_bind_sources_and_the_annotations(tmp_path):
    proc, cgroup = host(tmp_path, "0::/system.slice/runc-c1.scope\n", STAT)
    (tmp_path / "proc/42/fd").mkdir()
    os.symlink("pipe:[123]", tmp_path / "proc/42/fd/1")
    (tmp_path / "bundle").mkdir()
    config = {"mounts": [{"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]},
                         {"destination": "/proc", "type": "proc", "source": "proc"}],
              "annotations": {"ferry.runc.evacuate": "skip"}}
    (tmp_path / "bundle/config.json").write_text(json.dumps(config))
    state = {"id": "c1", "status": "running", "pid": 42, "bundle": str(tmp_path / "bundle")}
    details = container_details(state, proc, cgroup)
    assert details == {"problems": [details["problems"][0]], "memory_bytes": 8192 + 4096, "bind_sources": ["/srv/data"],
                       "annotations": {"ferry.runc.evacuate": "skip"}}
    assert details["problems"][0].startswith("its stdout is a pipe to a process on this host")


def test_a_stopped_container_without_a_readable_config_says_so(tmp_path):
    state = {"id": "c1", "status": "stopped", "pid": 0, "bundle": str(tmp_path / "gone")}
    details = container_details(state, str(tmp_path / "proc"))
    assert details["memory_bytes"] is None and details["bind_sources"] == [] and details["annotations"] == {}
    assert details["problems"] == [details["problems"][0]] and "config.json cannot be read" in details["problems"][0]


@pytest.mark.parametrize(
    "meminfo, expected",
    [("MemTotal:        4026800 kB\nMemFree:  100 kB\nMemAvailable:    3500000 kB\n", 3500000 * 1024),
     ("MemTotal:        4026800 kB\n", None)],
)
def test_the_available_memory_is_memavailable_or_none(tmp_path, meminfo, expected):
    (tmp_path / "meminfo").write_text(meminfo)
    assert memory_available_bytes(str(tmp_path / "meminfo")) == expected
