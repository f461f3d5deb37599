"""runc_checkpoint through its main(): the YAML case table, then the lazy-pages handshake with a stand-in runc.

The stand-in is a shell script in place of runc, started for real in the background: it records its command
line and, like CRIU, writes one byte on descriptor 3 when the non-memory images are complete (or exits, or hangs).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import time
from pathlib import Path

from _runc_cases import FIXTURES, check_absent, prepare
from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.modules import runc_checkpoint


RUNNING = '{"id": "c1", "pid": 553, "status": "running", "bundle": "/srv/b/c1", "created": "2026-11-25T22:34:11Z"}'


@module_cases(__file__)
def test_runc_checkpoint(case, run_module, tmp_path: Path):
    case = prepare(case, tmp_path)
    result = run_module(runc_checkpoint, case["params"], case["commands"])
    check_output(result, case["output"])
    check_absent(case, tmp_path)


def stand_in_runc(tmp_path: Path, body: str) -> str:
    """An executable that records its arguments to args (one a line) in the work path, then runs body."""
    script = tmp_path / "runc"
    script.write_text(f'#!/bin/sh\nwork={tmp_path}/lazy\nprintf "%s\\n" "$@" > "$work/args"\n{body}\n')
    script.chmod(0o755)
    return str(script)


def lazy_params(runc: str, tmp_path: Path, **extra) -> dict:
    return dict(
        container_id="c1",
        image_path=str(tmp_path / "lazy"),
        lazy_pages=True,
        page_server="10.99.0.1:27000",
        runc_path=runc,
        **extra,
    )


def state_commands(runc: str, count: int) -> list[dict]:
    return [{"argv": [runc, "--root", "/run/runc", "state", "c1"], "out": RUNNING}] * count


def wait_for_exit(pid: int) -> None:
    """Reap the background stand-in: the module ran in this process, so the stand-in is its child."""
    for _attempt in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        except ChildProcessError:
            return  # the finalizer of the module's Popen object reaped it already
        time.sleep(0.05)
    raise AssertionError(f"background process {pid} still runs")


def test_lazy_pages_returns_once_the_status_byte_arrives_with_runc_still_serving(run_module, tmp_path: Path):
    runc = stand_in_runc(tmp_path, "printf '\\0' >&3\nsleep 1\necho served all pages")
    result = run_module(runc_checkpoint, lazy_params(runc, tmp_path), state_commands(runc, 2))
    lazy = str(tmp_path / "lazy")
    assert result["changed"] is True
    assert result["lazy_checkpoint"]["runc_log"] == f"{lazy}/runc-lazy-checkpoint.log"
    assert result["lazy_checkpoint"]["criu_log"] == f"{lazy}/dump.log"
    assert "stats" not in result
    pid = result["lazy_checkpoint"]["pid"]
    os.kill(pid, 0)  # still serving pages when the module returned
    wait_for_exit(pid)
    assert (tmp_path / "lazy" / "args").read_text().splitlines() == [
        "--root", "/run/runc", "--criu", "/usr/bin/criu", "checkpoint", "--image-path", lazy, "--work-path", lazy,
        "--page-server", "10.99.0.1:27000", "--lazy-pages", "--status-fd", "3", "c1",
    ]  # fmt: skip
    assert (tmp_path / "lazy" / "runc-lazy-checkpoint.log").read_text() == "served all pages\n"


def test_lazy_pages_quotes_criu_log_when_runc_exits_without_the_status_byte(run_module, tmp_path: Path):
    (tmp_path / "lazy").mkdir()
    shutil.copyfile(FIXTURES / "dump-failed.log", tmp_path / "lazy" / "dump.log")
    runc = stand_in_runc(
        tmp_path, """echo 'time="x" level=error msg="criu failed: type NOTIFY errno 0"' >&2\nexit 1"""
    )
    result = run_module(runc_checkpoint, lazy_params(runc, tmp_path), state_commands(runc, 1))
    assert result["failed"] is True
    assert result["msg"].startswith(
        f"checkpoint of container c1 failed on {platform.node()}: runc exited with 1: criu failed: type NOTIFY errno 0."
        f" CRIU log {tmp_path}/lazy/dump.log: "
    )
    assert result["criu_log_excerpt"][-1] == "(00.624462) Error (criu/cr-dump.c:2053): Dumping FAILED."


def test_lazy_pages_gives_up_waiting_and_names_the_runc_that_still_runs(run_module, tmp_path: Path):
    runc = stand_in_runc(tmp_path, "exec sleep 30")
    result = run_module(runc_checkpoint, lazy_params(runc, tmp_path, lazy_pages_timeout=1), state_commands(runc, 1))
    pid = result["lazy_checkpoint"]["pid"]
    try:
        assert result["msg"] == (
            f"checkpoint of container c1 failed on {platform.node()}: CRIU did not report the non-memory images complete within 1 s; "
            f"runc checkpoint still runs as pid {pid} (log {tmp_path}/lazy/runc-lazy-checkpoint.log)"
        )
        os.kill(pid, 0)
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_for_exit(pid)


def test_the_background_runc_reads_dev_null_and_leads_its_own_session(run_module, tmp_path: Path):
    body = 'readlink /proc/$$/fd/0 > "$work/stdin"\nps -o sid= -p $$ > "$work/sid"\nprintf "\\0" >&3'
    runc = stand_in_runc(tmp_path, body)
    result = run_module(runc_checkpoint, lazy_params(runc, tmp_path), state_commands(runc, 2))
    wait_for_exit(result["lazy_checkpoint"]["pid"])
    assert (tmp_path / "lazy" / "stdin").read_text() == "/dev/null\n"
    assert int((tmp_path / "lazy" / "sid").read_text()) == result["lazy_checkpoint"]["pid"]
