"""The example workloads (examples/workloads): built with their Makefile, run here as plain processes."""

from __future__ import annotations

import datetime
import os
import pathlib
import re
import signal
import struct
import subprocess
import time
from typing import Callable, Dict, List, Set, Tuple

import pytest

WORKLOADS = pathlib.Path(__file__).resolve().parents[3] / "examples" / "workloads"
PROGRAMS = ("memstress", "trainer")
PT_INTERP = 3
PAGES_PER_MIB = 256
TIMEOUT = 10.0
# 16 MiB swept four times a second, a report every sweep.
SMALL_MEMSTRESS = ("--size-mib", "16", "--pass-sec", "0.25", "--report-every-sec", "0.25")

Record = Tuple[datetime.datetime, str, Dict[str, str]]


def make(out: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(WORKLOADS), f"OUT={out}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("workloads")
    result = make(out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def spawn(binaries: pathlib.Path, tmp_path: pathlib.Path):
    """Starts a workload the way a container does (stdio on /dev/null); returns the process and its log."""
    processes: List[subprocess.Popen] = []

    def start(program: str, *flags: str) -> Tuple[subprocess.Popen, pathlib.Path]:
        log = tmp_path / f"{program}-{len(processes)}.log"
        argv = [str(binaries / program), "--log", str(log), *flags]
        processes.append(
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        return processes[-1], log

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def parse_line(line: str) -> Record:
    """'<timestamp> [event] key=value ...' -> (time, event or '', fields)."""
    stamp, _space, rest = line.partition(" ")
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    words = rest.split()
    event = "" if "=" in words[0] else words.pop(0)
    return when, event, dict(word.split("=", 1) for word in words if "=" in word)


def read_log(log: pathlib.Path) -> List[Record]:
    return [parse_line(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(log: pathlib.Path, found: Callable[[Record], bool], timeout: float = TIMEOUT) -> Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_log(log):
            if found(record):
                return record
        time.sleep(0.05)
    text = log.read_text() if log.exists() else "(no log)"
    pytest.fail(f"the awaited line did not appear in {log} within {timeout}s:\n{text}")


def event(name: str) -> Callable[[Record], bool]:
    return lambda record: record[1] == name


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=TIMEOUT)


def progress(records: List[Record]) -> List[Record]:
    return [record for record in records if record[1] == "" and "step" in record[2]]


def seconds(start: datetime.datetime, end: datetime.datetime) -> float:
    return (end - start).total_seconds()


def has_interpreter(binary: pathlib.Path) -> bool:
    data = binary.read_bytes()
    (table,) = struct.unpack_from("<Q", data, 0x20)
    entry_size, entries = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, table + i * entry_size)[0] == PT_INTERP for i in range(entries))


def test_build_is_static_and_rebuilds_only_what_changed(binaries: pathlib.Path) -> None:
    for program in PROGRAMS:
        assert not has_interpreter(binaries / program), f"{program} is dynamically linked"
    assert make(binaries, "-q").returncode == 0, "a second make would rebuild although no source changed"
    os.utime(binaries / "trainer", (0, 0))
    assert make(binaries, "-q").returncode == 1, "make would not rebuild a binary older than its source"
    rebuilt = make(binaries)
    assert "trainer.c" in rebuilt.stdout and "memstress.c" not in rebuilt.stdout, rebuilt.stdout


@pytest.mark.parametrize(
    "source, programs",
    [
        ("trainer.c", {"trainer"}),
        ("memstress.c", {"memstress"}),
        ("common.c", set(PROGRAMS)),
        ("common.h", set(PROGRAMS)),
    ],
)
def test_a_changed_source_rebuilds_the_binaries_built_from_it(
    binaries: pathlib.Path, source: str, programs: Set[str]
) -> None:
    # make -n -W pretends that the source has just changed, without touching the checkout.
    assert (WORKLOADS / source).is_file()
    planned = make(binaries, "-n", "-W", source)
    assert planned.returncode == 0, planned.stderr
    words = planned.stdout.split()
    outputs = {pathlib.Path(words[i + 1]).name for i in range(len(words) - 1) if words[i] == "-o"}
    assert outputs == programs, planned.stdout


@pytest.mark.parametrize(
    "program, flags",
    [
        ("trainer", ["--steps-per-second", "--log-every", "--seed", "--max-steps", "--log"]),
        ("memstress", ["--size-mib", "--dirty-mib-per-sec", "--pass-sec", "--report-every-sec", "--log"]),
    ],
)
def test_help_lists_every_flag_and_bad_usage_fails(binaries: pathlib.Path, program: str, flags: List[str]) -> None:
    shown = subprocess.run([str(binaries / program), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert all(flag in shown.stdout for flag in flags), shown.stdout
    refused = subprocess.run([str(binaries / program), flags[0], "-1"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert flags[0] in refused.stderr


def test_trainer_loss_falls_at_the_set_pace_and_sigterm_ends_it(spawn) -> None:
    process, log = spawn("trainer", "--steps-per-second", "250", "--log-every", "20", "--seed", "7")
    wait_for(log, lambda record: int(record[2].get("step", 0)) >= 400 and record[1] == "")
    assert stop(process) == 0

    records = read_log(log)
    lines = progress(records)
    steps = [int(fields["step"]) for _when, _name, fields in lines]
    assert steps == list(range(20, 20 * len(lines) + 1, 20))
    losses = [float(fields["loss"]) for _when, _name, fields in lines]
    early, late = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert late < 0.8 * early, f"loss did not fall clearly: {losses}"
    assert all(0.0 <= float(fields["acc"]) <= 1.0 for _when, _name, fields in lines)
    assert seconds(records[0][0], lines[-1][0]) >= 0.8 * steps[-1] / 250, "the pace was not kept"
    assert records[0][1] == "ready"
    _when, last, fields = records[-1]
    assert (last, fields["signal"]) == ("stopped", "TERM")
    assert int(fields["step"]) >= steps[-1]


def test_trainer_is_deterministic_for_a_seed(spawn) -> None:
    def run(seed: str) -> List[str]:
        process, log = spawn(
            "trainer", "--steps-per-second", "0", "--max-steps", "300", "--log-every", "50", "--seed", seed
        )
        assert process.wait(timeout=TIMEOUT) == 0
        records = read_log(log)
        assert records[-1][1:] == ("finished", {"step": "300"})
        return [" ".join(f"{key}={value}" for key, value in fields.items()) for _when, _name, fields in progress(records)]

    first = run("3")
    assert len(first) == 6
    assert run("3") == first
    assert run("4") != first


def test_trainer_after_a_freeze_logs_the_pause_and_does_not_catch_up(spawn) -> None:
    process, log = spawn("trainer", "--steps-per-second", "100", "--log-every", "10")
    wait_for(log, lambda record: record[2].get("step") == "50")
    process.send_signal(signal.SIGSTOP)
    time.sleep(1.5)
    process.send_signal(signal.SIGCONT)
    paused_at, _name, pause = wait_for(log, event("pause"))
    time.sleep(0.5)
    assert stop(process) == 0

    assert int(pause["wall_ms"]) >= 1400
    records = read_log(log)
    before = [int(fields["step"]) for when, _name, fields in progress(records) if when <= paused_at]
    slack = 10 + 10 + 5  # the 0.1 s burst cap, one log interval, timer jitter
    for when, _name, fields in progress(records):
        if when > paused_at:
            allowed = before[-1] + 100 * seconds(paused_at, when) + slack
            assert int(fields["step"]) <= allowed, "the trainer caught up on the frozen time in a burst"


@pytest.mark.parametrize("dirty_mib_per_sec", [0, 32], ids=["idle", "busy"])
def test_memstress_verifies_every_pass_without_errors(spawn, dirty_mib_per_sec: int) -> None:
    process, log = spawn("memstress", *SMALL_MEMSTRESS, "--dirty-mib-per-sec", str(dirty_mib_per_sec))
    ready_at, _name, ready = wait_for(log, event("ready"))
    assert ready["pages"] == str(16 * PAGES_PER_MIB)
    time.sleep(1.5)
    assert stop(process) == 0

    records = read_log(log)
    assert [name for _when, name, _fields in records[:2]] == ["start", "ready"]
    assert not [record for record in records if record[1] == "CORRUPTION"]
    reports = [(when, fields) for when, name, fields in records if name == "report"]
    assert len(reports) >= 4
    stopped_at, final = reports[-1]
    assert int(final["passes"]) >= 3
    assert int(final["pages_verified"]) >= int(final["passes"]) * 16 * PAGES_PER_MIB
    assert final["errors"] == "0"
    assert int(final["pass_ms"]) > 0
    target = dirty_mib_per_sec * PAGES_PER_MIB * seconds(ready_at, stopped_at)
    dirtied = int(final["pages_dirtied"])
    if dirty_mib_per_sec:
        assert 0.6 * target <= dirtied <= 1.05 * target + 0.1 * dirty_mib_per_sec * PAGES_PER_MIB
    else:
        assert dirtied == 0
    assert records[-1][1:] == ("stopped", {"signal": "TERM", "errors": "0"})


def test_memstress_logs_a_flipped_byte_as_corruption(spawn) -> None:
    process, log = spawn("memstress", *SMALL_MEMSTRESS, "--dirty-mib-per-sec", "8")
    wait_for(log, event("ready"))
    process.send_signal(signal.SIGUSR1)
    _when, _name, corruption = wait_for(log, event("CORRUPTION"))
    assert stop(process) == 1

    records = read_log(log)
    flipped = next(fields for _when, name, fields in records if name == "debug")
    assert corruption["page"] == flipped["page"]
    assert corruption["offset"] == flipped["offset"]
    assert int(corruption["expected"], 16) ^ int(corruption["got"], 16) == 0xFF
    line = next(line for line in log.read_text().splitlines() if "CORRUPTION" in line)
    assert re.search(r" CORRUPTION page=\d+ expected=0x[0-9a-f]{16} got=0x[0-9a-f]{16} ", line), line
    final = [fields for _when, name, fields in records if name == "report"][-1]
    assert final["errors"] == "1", "a repaired page must be counted once"
    assert records[-1][1:] == ("stopped", {"signal": "TERM", "errors": "1"})
