"""How much memory a container holds (_inspect.cgroup_memory_bytes), read from its cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._inspect import cgroup_memory_bytes

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
