"""Excerpts of CRIU logs (_criu.log_excerpt), on real logs of a failed dump and a failed restore from the lab VMs.

dump-failed.log: a container whose stdout was a host file (`runc run -d ID >/tmp/x/t2.out`) cannot be dumped.
restore-failed.log: the restore of a dump whose executable had been moved out of the bundle's root file system.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ansible_collections.ferry.runc.plugins.module_utils import _criu
from ansible_collections.ferry.runc.plugins.module_utils._criu import log_excerpt

FIXTURES = Path(__file__).parents[2] / "fixtures" / "criu"


def test_a_failed_dump_is_explained_by_its_error_lines_each_after_one_line_of_context():
    assert log_excerpt(str(FIXTURES / "dump-failed.log")) == [
        "(00.375836) 1347 fdinfo 1: pos:                0 flags:           100001/0",
        "(00.376216) Error (criu/files-reg.c:1710): Can't lookup mount=27 for fd=1 path=/tmp/x/t2.out",
        "(00.376423) ----------------------------------------",
        "(00.376886) Error (criu/cr-dump.c:1635): Dump files (pid: 1347) failed with -1",
        "(00.616809) \tUnseizing 1390 into 1",
        "(00.624462) Error (criu/cr-dump.c:2053): Dumping FAILED.",
    ]


def test_a_failed_restore_is_explained_by_its_error_lines_each_after_one_line_of_context():
    assert log_excerpt(str(FIXTURES / "restore-failed.log")) == [
        "(01.122153)      1: Opened local page read 1 (parent 0)",
        "(01.124164)      1: Error (criu/files-reg.c:2259): Can't open file bin/busybox on restore: No such file or directory",
        "(01.124580)      1: Error (criu/files-reg.c:2185): Can't open file bin/busybox: No such file or directory",
        "(01.124712)      1: Error (criu/mem.c:854): Can't fixup VMA's fd",
        "(01.130742) mnt: Switching to new ns to clean ghosts",
        "(01.142888) Error (criu/cr-restore.c:2537): Restoring FAILED.",
    ]


def test_the_last_lines_are_kept_because_criu_ends_with_its_verdict():
    assert log_excerpt(str(FIXTURES / "dump-failed.log"), max_lines=2) == [
        "(00.616809) \tUnseizing 1390 into 1",
        "(00.624462) Error (criu/cr-dump.c:2053): Dumping FAILED.",
    ]


def test_lines_that_report_nothing_wrong_are_left_out(tmp_path: Path):
    log = tmp_path / "dump.log"
    log.write_text(
        "(00.004184) Hugetlb size 2 Mb is supported but cannot get dev's number\n"
        "(00.100000) Dumping path for 0 fd via self 17 [/dev/null]\n"
        "(00.200000) Writing stats\n"
        "(00.300000) Dumping finished successfully\n"
    )
    assert log_excerpt(str(log)) == []


def test_a_missing_log_gives_no_lines(tmp_path: Path):
    assert log_excerpt(str(tmp_path / "restore.log")) == []


TLS = {"tls_cacert": "/t/ca.pem", "tls_cert": "/t/cert.pem", "tls_key": "/t/key.pem"}


def test_tls_args_follow_the_certificate():
    assert _criu.tls_args(TLS) == ["--tls", "--tls-cacert", "/t/ca.pem", "--tls-cert", "/t/cert.pem", "--tls-key", "/t/key.pem"]
    assert _criu.tls_args({}) == []


PEM = {"tls_cacert": "CA PEM\n", "tls_cert": "CERT PEM\n", "tls_key": "KEY PEM\n"}


def test_tls_files_hold_the_pem_texts_root_only_while_the_block_runs(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_criu, "TLS_FILES_PARENT", str(tmp_path))
    with _criu.tls_files(PEM) as paths:
        assert sorted(paths) == ["tls_cacert", "tls_cert", "tls_key"]
        directory = Path(paths["tls_key"]).parent
        assert directory.parent == tmp_path
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for option, path in paths.items():
            assert Path(path).read_text() == PEM[option]
            assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == []


def test_tls_files_are_removed_when_the_block_fails(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_criu, "TLS_FILES_PARENT", str(tmp_path))
    with pytest.raises(RuntimeError):
        with _criu.tls_files(PEM):
            raise RuntimeError("dump failed")
    assert list(tmp_path.iterdir()) == []


def test_no_tls_files_without_a_certificate(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_criu, "TLS_FILES_PARENT", str(tmp_path))
    with _criu.tls_files({"tls_cacert": None, "tls_cert": None, "tls_key": None}) as paths:
        assert paths == {}
    assert list(tmp_path.iterdir()) == []


OWNER = {"pid": 4242, "start_time": 777}


@pytest.mark.parametrize("current", ["", "tcp-established\n", "tcp-established"])
def test_a_section_goes_after_the_config_and_comes_out_again_whole(current):
    with_tls = _criu.config_with_section(current, "m1 tls", _criu.tls_config_lines(TLS), OWNER)
    assert with_tls.splitlines()[-6:] == [
        "# ferry.runc m1 tls (owner 4242 777): begin; removed when that migration's agent ends",
        "tls", "tls-cacert /t/ca.pem", "tls-cert /t/cert.pem", "tls-key /t/key.pem",
        "# ferry.runc m1 tls: end",
    ]  # fmt: skip
    assert with_tls.startswith(current)
    without = _criu.config_without_sections(with_tls, lambda name, _owner: name == "m1 tls")
    assert without.rstrip("\n") == current.rstrip("\n")


def test_a_section_left_by_an_interrupted_run_of_the_same_name_is_replaced():
    stale = _criu.config_with_section("tcp-established\n", "m1 tls", ["tls-cert /old/c"], OWNER)
    fresh = _criu.config_with_section(stale, "m1 tls", _criu.tls_config_lines(TLS), OWNER)
    assert "/old/" not in fresh
    assert fresh.count("begin;") == 1
    assert fresh.startswith("tcp-established\n")


def test_other_sections_and_lines_stay(tmp_path: Path, monkeypatch):
    config = tmp_path / "runc.conf"
    monkeypatch.setattr(_criu, "RUNC_CONFIG", str(config))
    monkeypatch.setattr(_criu, "RUNC_CONFIG_LOCK", str(tmp_path / "lock"))
    config.write_text(_criu.config_with_section("log-file /var/log/criu.log\n", "m2 tls", ["tls"], _criu.own_identity()))
    with _criu.exclusive_config_section("m1 hold", _criu.HOLD_LINES):
        inside = config.read_text()
    assert "leave-stopped" in inside and "m2 tls" in inside
    assert config.read_text().startswith("log-file /var/log/criu.log\n") and "leave-stopped" not in config.read_text()
    assert "m2 tls" in config.read_text()


def test_the_sections_of_dead_agents_are_dropped_so_a_stale_hold_never_stops_a_later_dump(tmp_path: Path, monkeypatch):
    config = tmp_path / "runc.conf"
    monkeypatch.setattr(_criu, "RUNC_CONFIG", str(config))
    monkeypatch.setattr(_criu, "RUNC_CONFIG_LOCK", str(tmp_path / "lock"))
    dead = {"pid": 2 ** 22 + 1, "start_time": 1}
    config.write_text(_criu.config_with_section("", "m0 hold", _criu.HOLD_LINES, dead))
    with _criu.added_config_section("m1 tls", ["tls"]):
        assert "leave-stopped" not in config.read_text()
    assert not config.exists()


@pytest.mark.parametrize(("content", "problems"), [
    ("", 0), ("tcp-established\nlog-file /var/log/criu.log\n", 0), ("leave-stopped\n", 1),
    (_criu.config_with_section("", "m1 hold", _criu.HOLD_LINES, OWNER), 0),
], ids=["empty", "other-options", "leave-stopped", "a-migration-s-own-hold"])
def test_a_foreign_leave_stopped_is_a_problem_a_section_of_ours_is_not(tmp_path: Path, monkeypatch, content: str, problems: int):
    config = tmp_path / "runc.conf"
    config.write_text(content)
    monkeypatch.setattr(_criu, "RUNC_CONFIG", str(config))
    assert len(_criu.foreign_config_problems()) == problems


# Lines of the dst VM's /proc/self/mountinfo after a lazy restore's CRIU was killed (the mounts it left in its work
# directory), with a mount point under a sibling directory and one whose name holds a space.
MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
41 22 0:40 / /srv/ferry-runc rw,relatime shared:20 - nfs4 10.99.0.1:/srv/ferry-runc rw,vers=4.2
77 22 0:52 / /var/lib/ferry-runc/work/m1/lazy/.criu.cgyard.tc2mlY rw,relatime shared:40 - tmpfs none rw,inode64
78 77 0:27 / /var/lib/ferry-runc/work/m1/lazy/.criu.cgyard.tc2mlY/unified rw,relatime shared:9 - cgroup2 none rw
79 22 0:53 / /var/lib/ferry-runc/work/m1/lazy\\040copy rw,relatime shared:41 - tmpfs none rw
80 22 0:54 / /var/lib/ferry-runc/work/m10 rw,relatime shared:42 - tmpfs none rw
"""


def test_mount_points_below_a_directory_come_deepest_first():
    assert _criu.mount_points_under("/var/lib/ferry-runc/work/m1/", MOUNTINFO) == [
        "/var/lib/ferry-runc/work/m1/lazy/.criu.cgyard.tc2mlY/unified",
        "/var/lib/ferry-runc/work/m1/lazy/.criu.cgyard.tc2mlY",
        "/var/lib/ferry-runc/work/m1/lazy copy",
    ]
    assert _criu.mount_points_under("/srv/ferry-runc", MOUNTINFO) == []


def fake_process(proc: Path, pid: int, name: str, ppid: int, args: list) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1\n")
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in args) + b"\0")


def test_the_criu_of_a_restore_is_found_by_its_parents_work_path(tmp_path: Path):
    work = "/var/lib/ferry-runc/work/m1/lazy"
    fake_process(tmp_path, 580, "runc", 568, ["/usr/sbin/runc", "--root", "/run/runc", "restore", "--work-path", work, "c1"])
    fake_process(tmp_path, 587, "criu", 580, ["criu: restore --rpc -D " + work])
    fake_process(tmp_path, 589, "sh", 580, ["sh"])
    fake_process(tmp_path, 600, "runc", 1, ["/usr/sbin/runc", "restore", "--work-path", work + "2", "c2"])
    fake_process(tmp_path, 601, "criu", 600, ["criu: restore --rpc"])
    fake_process(tmp_path, 610, "criu", 1, ["criu", "lazy-pages", "-D", work])
    (tmp_path / "self").mkdir()

    assert _criu.restore_criu_pids(work, proc=str(tmp_path)) == [587]
