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


@pytest.mark.parametrize("current", ["", "tcp-established\n", "tcp-established"])
def test_tls_lines_are_added_after_the_runc_config_and_taken_out_again(current):
    with_tls = _criu.runc_config_with_tls(current, TLS)
    assert with_tls.splitlines()[-4:] == ["tls", "tls-cacert /t/ca.pem", "tls-cert /t/cert.pem", "tls-key /t/key.pem"]
    assert with_tls.startswith(current)
    assert _criu.runc_config_without_tls(with_tls).rstrip("\n") == current.rstrip("\n")


def test_tls_lines_left_by_an_interrupted_migration_are_replaced():
    stale = _criu.runc_config_with_tls("tcp-established\n", {"tls_cacert": "/old/ca", "tls_cert": "/old/c", "tls_key": "/old/k"})
    fresh = _criu.runc_config_with_tls(stale, TLS)
    assert "/old/" not in fresh
    assert fresh.count(_criu.RUNC_CONFIG_MARKER) == 1
    assert fresh.startswith("tcp-established\n")
