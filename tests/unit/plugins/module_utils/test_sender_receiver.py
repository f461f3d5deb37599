"""Whole migrations in-process: a Receiver in a thread on 127.0.0.1 and a Sender, both with fake modules.

Each side's fake module answers its scripted commands and asserts their exact argv (see _migration_fakes); the
control channel, the tree sync, the manifests and the post-copy processes are real. Last, the two modules' main()
with their error messages.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from _migration_fakes import (
    ADDRESS,
    CONTAINER,
    CRIU,
    FIXTURES,
    IO_TIMEOUT,
    LAZY_PORT,
    MEMORY_IMAGES,
    PAGE_SERVER_PORT,
    PAGE_SIZE,
    PAGES_WRITTEN,
    RUNC,
    SECRET,
    FakeModule,
    Migration,
    Step,
    running_state,
)
from ansible.module_utils.basic import AnsibleModule
from conftest import patch_module_args

from ansible_collections.ferry.runc.plugins.module_utils import _manifest, _receiver, _report
from ansible_collections.ferry.runc.plugins.module_utils._channel import ChannelError, PeerFailed, connect
from ansible_collections.ferry.runc.plugins.module_utils._criu import log_excerpt
from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import read_dump_stats, read_restore_stats
from ansible_collections.ferry.runc.plugins.module_utils._receiver import Receiver
from ansible_collections.ferry.runc.plugins.module_utils._sender import MigrationFailed, Sender
from ansible_collections.ferry.runc.plugins.module_utils._treesync import list_tree
from ansible_collections.ferry.runc.plugins.modules import migration_receiver, migration_sender

PAGE_SERVER = f"{ADDRESS}:{PAGE_SERVER_PORT}"
NOTHING_FROZEN = "nothing was frozen; the container kept running on the source"
RESUMED = "the container was resumed on the source from the moment it was frozen"
RESTORE_STATS = read_restore_stats(str(FIXTURES / "restore.stats-restore"))
PLAN = {"migration_id": "m1", "container": CONTAINER, "source": "src", "destination": "dst", "strategy": "pre-copy",
        "strategy_reason": "requested", "transport": "shared", "bundle_sync": "shared"}
TIMES = {"started": 100.0, "sender_started": 103.0, "sender_ended": 110.0, "ended": 111.0}


@pytest.fixture
def migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return a factory of Migration harnesses; page servers they started are stopped afterwards."""
    made = []

    def make(**kwargs: Any) -> Migration:
        made.append(Migration(tmp_path, monkeypatch, **kwargs))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


def files_of(directory: Path) -> Dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file() and not path.is_symlink()}


def request_types(result: Dict[str, Any]) -> list:
    return [request.get("target", request["type"]) for request in result["requests"]]


def check_final_record(final: Dict[str, Any], stats: str) -> None:
    expected = read_dump_stats(str(FIXTURES / f"{stats}.stats-dump"))
    assert final["round"] == 0
    assert final["pages_written"] == expected["pages_written"]
    assert final["pages_skipped_parent"] == expected["pages_skipped_parent"]
    assert final["bytes_written"] == expected["pages_written"] * PAGE_SIZE
    assert final["frozen_ms"] == round(expected["frozen_time"] / 1000, 1)


# -- successful migrations ------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_images", [False, True])
def test_stop_and_copy_over_shared_storage(migration, keep_images: bool):
    harness = migration()
    harness.sender_params["keep_images"] = keep_images
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.delete_source(),
    ]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.restore()]

    outcome = harness.run()

    assert outcome.error is None
    report = outcome.report
    assert report["source_deleted"] is True and report["rolled_back"] is False
    assert report["bundle"] == str(harness.source_bundle)
    assert report["rounds"] == [] and report["stop_reason"] is None
    check_final_record(report["final"], "dump-with-parent")
    assert report["restore"] == dict(RESTORE_STATS, seconds=report["restore"]["seconds"])
    assert isinstance(report["downtime_ms"], int) and report["downtime_ms"] >= 0
    assert report["channel_bytes"] > 0
    assert "recovery" not in report
    assert outcome.receiver["outcome"] == "committed"
    assert outcome.receiver["restore"] == report["restore"]
    assert request_types(outcome.receiver) == ["prepare", "restore"]
    assert report.get("images_removed") is (None if keep_images else True)
    assert harness.source_images.exists() is keep_images
    assert harness.work.exists() is keep_images
    if keep_images:
        final = harness.source_images / "final"
        assert _manifest.verify(str(final), _manifest.read(str(final))) == []
        assert (harness.work / "restore" / "stats-restore").is_file()
        # The share token and the CPU description the receiver checked stay with the images.
        assert (harness.source_images / "cpuinfo.img").is_file()


PRE_COPY_CASES = {
    # Round 1 alone would fit the budget (about 320 ms predicted), but min_rounds asks for two.
    "converged after min_rounds": (["pre-dump", "dump-with-parent"], 5000, 8, "converged: predicted frozen time"),
    "not shrinking": (["dump-with-parent", "pre-dump"], 100, 8, "not shrinking: round 2 wrote 34 pages after 24"),
    "round limit": (["pre-dump", "dump-with-parent"], 100, 2, "round limit: 2 rounds"),
}


@pytest.mark.parametrize("rounds, budget, max_rounds, reason", PRE_COPY_CASES.values(), ids=PRE_COPY_CASES.keys())
def test_pre_copy_over_shared_storage(migration, rounds, budget, max_rounds, reason):
    harness = migration(strategy="pre-copy")
    harness.sender_params.update(min_rounds=2, downtime_budget_ms=budget, max_rounds=max_rounds, tcp_established=True,
                                 file_locks=True, manage_cgroups_mode="soft")
    harness.receiver_params.update(tcp_established=True, manage_cgroups_mode="soft")
    criu_options = ("--tcp-established", "--file-locks", "--manage-cgroups-mode", "soft")
    pre_dumps = [harness.dump("pre1", "--pre-dump", *criu_options, stats=rounds[0])]
    pre_dumps += [
        harness.dump(f"pre{number}", "--parent-path", f"../pre{number - 1}", "--pre-dump", *criu_options, stats=stats)
        for number, stats in enumerate(rounds[1:], 2)
    ]
    last = f"pre{len(rounds)}"
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        *pre_dumps,
        harness.pause(),
        harness.dump("final", "--parent-path", f"../{last}", "--leave-running", *criu_options),
        harness.delete_source(),
    ]
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(),
        harness.restore("--tcp-established", "--manage-cgroups-mode", "soft"),
    ]
    harness.sender_params["keep_images"] = True

    outcome = harness.run()

    assert outcome.error is None
    report = outcome.report
    assert report["stop_reason"].startswith(reason), report["stop_reason"]
    assert [record["round"] for record in report["rounds"]] == list(range(1, len(rounds) + 1))
    for record, stats in zip(report["rounds"], rounds):
        assert record["pages_written"] == PAGES_WRITTEN[stats]
        assert record["bytes_written"] == PAGES_WRITTEN[stats] * PAGE_SIZE
        directory = harness.source_images / f"pre{record['round']}"
        # The receiver read and checked every image of the round (the manifest's files, not the logs).
        assert record["bytes_fetched"] == sum(entry["size"] for entry in _manifest.read(str(directory)).values())
        assert record["bytes_fetched"] > record["bytes_written"]
        assert record["predicted_final_frozen_ms"] >= record["frozen_ms"]
    assert request_types(outcome.receiver) == ["prepare"] + ["fetch"] * len(rounds) + ["restore"]
    assert outcome.receiver["outcome"] == "committed"
    # The sender's report is what the report filter is built from.
    built = _report.build(PLAN, report, outcome.receiver, TIMES)
    assert built["outcome"] == "migrated"
    assert built["bytes"]["pre_copy_pages"] == sum(PAGES_WRITTEN[stats] for stats in rounds) * PAGE_SIZE
    assert f"  pre-copy stopped: {report['stop_reason']}" in _report.summary(built)


def test_page_server_transport_sends_memory_to_page_servers_and_the_rest_over_the_channel(migration):
    harness = migration(strategy="pre-copy", transport="page-server")
    harness.sender_params.update(min_rounds=2, max_rounds=2, keep_images=True)
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.dump("pre1", "--pre-dump", "--page-server", PAGE_SERVER, stats="pre-dump"),
        harness.dump("pre2", "--parent-path", "../pre1", "--pre-dump", "--page-server", PAGE_SERVER),
        harness.pause(),
        harness.dump("final", "--parent-path", "../pre2", "--leave-running", "--page-server", PAGE_SERVER),
        harness.delete_source(),
    ]
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(),
        harness.page_server("pre1"),
        harness.page_server("pre2", parent="pre1"),
        harness.page_server("final", parent="pre2"),
        harness.restore(),
    ]

    outcome = harness.run()

    assert outcome.error is None
    report = outcome.report
    assert report["stop_reason"].startswith("round limit: 2 rounds")
    assert not (harness.source_images / ".ferry-share-token").exists()
    assert request_types(outcome.receiver) == ["prepare", "page_server", "page_server", "page_server", "images/final", "restore"]
    source_final = harness.source_images / "final"
    destination_final = harness.destination_images / "final"
    # Every non-memory image came over the channel, into the receiver's own directory, byte for byte.
    sent = files_of(source_final)
    assert not set(MEMORY_IMAGES) & set(sent)
    received = files_of(destination_final)
    assert {name: received[name] for name in sent} == sent
    # Memory went to the page server (written by our stand-in into the receiver's directory).
    assert set(MEMORY_IMAGES) <= set(received)
    assert report["final"]["images_sent_bytes"] == sum(len(data) for data in sent.values())
    assert outcome.receiver["requests"][4]["bytes"] == report["final"]["images_sent_bytes"]
    check_final_record(report["final"], "dump-with-parent")
    assert outcome.receiver["outcome"] == "committed"
    # keep_images: the receiver's own image directory and work directory stay too.
    assert harness.destination_images.is_dir() and harness.work.is_dir()


def test_page_server_transport_removes_both_image_directories_after_commit(migration):
    harness = migration(transport="page-server")
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running", "--page-server", PAGE_SERVER),
        harness.delete_source(),
    ]
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(),
        harness.page_server("final"),
        harness.restore(),
    ]

    outcome = harness.run()

    assert outcome.error is None
    assert outcome.receiver["outcome"] == "committed"
    assert not harness.source_images.exists()
    assert not harness.destination_images.exists()
    assert not harness.work.exists()


def test_bundle_copy_reproduces_the_tree_and_sends_the_frozen_delta(migration):
    harness = migration(bundle_sync="copy")
    rootfs = harness.source_bundle / "rootfs"

    def change_while_frozen() -> None:
        (rootfs / "data.txt").write_text("count=12\n")
        (rootfs / "new.txt").write_text("written just before the freeze\n")
        (rootfs / "entry").unlink()

    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(effect=change_while_frozen),
        harness.dump("final", "--leave-running"),
        harness.delete_source(),
    ]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.restore()]
    before = list_tree(str(harness.source_bundle))

    outcome = harness.run()

    assert outcome.error is None
    assert not harness.destination_bundle.samefile(harness.source_bundle)
    assert list_tree(str(harness.destination_bundle)) == list_tree(str(harness.source_bundle))
    first_pass = sum(entry.get("size", 0) for entry in before.values())
    delta = len("count=12\n") + len("written just before the freeze\n")
    assert [(record["step"], record["bytes"]) for record in outcome.report["bundle_sync"]] == [
        ("bundle copy", first_pass),
        ("bundle update (frozen)", delta),
    ]
    assert request_types(outcome.receiver) == ["prepare", "bundle", "bundle", "restore"]
    assert outcome.receiver["outcome"] == "committed"


@pytest.mark.parametrize("keep_images", [False, True])
def test_post_copy_restores_at_once_and_deletes_the_source_after_the_last_page(migration, keep_images: bool):
    harness = migration(strategy="post-copy")
    harness.sender_params["keep_images"] = keep_images
    harness.lazy_runc_script()
    harness.lazy_daemon_script("serve")
    lazy = harness.work / "lazy"
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.delete_source()]
    harness.receiver_steps = harness.lazy_restore_steps()

    outcome = harness.run()

    assert outcome.error is None
    final = harness.source_images / "final"
    assert harness.recorded_args("runc-lazy.args") == [
        "--root", "/run/runc", "checkpoint", "--image-path", str(final), "--work-path", str(final), "--leave-running",
        "--page-server", f"{ADDRESS}:{LAZY_PORT}", "--lazy-pages", "--status-fd", "3", CONTAINER,
    ]
    assert harness.recorded_args("criu-lazy.args") == [
        "lazy-pages", "--page-server", "--address", ADDRESS, "--port", str(LAZY_PORT), "-D", str(lazy), "-o", "lazy-pages.log",
    ]
    report = outcome.report
    assert report["source_deleted"] is True and report["rolled_back"] is False
    assert report["lazy"]["ok"] is True and report["lazy"]["source_rc"] == 0
    assert report["final"]["images_ready_seconds"] >= 0
    assert report["final"]["started_at"] == report["frozen_at"]
    # CRIU 3.17's statistics of a lazy dump count neither the lazy pages nor the downtime: none are reported.
    assert "frozen_ms" not in report["final"]
    assert report["restore"] == dict(RESTORE_STATS, seconds=report["restore"]["seconds"])
    assert outcome.receiver["outcome"] == "committed"
    assert harness.source_images.exists() is keep_images
    assert harness.work.exists() is keep_images


# -- failures after the freeze: the source is resumed ---------------------------------------------------


def test_a_failed_restore_quotes_restore_log_and_resumes_the_source(migration):
    harness = migration()
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.source_state("paused"),
        harness.resume(),
    ]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.restore(rc=1)]

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    restore_log = harness.work / "restore" / "restore.log"
    assert str(outcome.error) == (
        f"the receiver failed: runc restore failed: criu failed: type NOTIFY errno 0; log file: {restore_log}"
    )
    assert outcome.error.log == log_excerpt(str(FIXTURES / "restore-failed.log"))
    assert "Error (criu/cr-restore.c:2537): Restoring FAILED." in outcome.error.log[-1]
    report = outcome.report
    assert report["rolled_back"] is True and report["source_deleted"] is False
    assert report["recovery"] == RESUMED
    assert "downtime_ms" not in report and "restore" not in report
    assert outcome.receiver["outcome"].startswith("rolled back: the receiver failed: runc restore failed: ")
    assert "deleted_copy" not in outcome.receiver
    # After a failure the images are always kept, on both sides.
    assert (harness.source_images / "final" / "inventory.img").is_file()
    assert restore_log.is_file()


def test_tampered_images_are_refused_and_the_source_resumed(migration, monkeypatch: pytest.MonkeyPatch):
    harness = migration()
    real_write = _manifest.write

    def write_then_tamper(directory: str) -> Dict[str, Any]:
        manifest = real_write(directory)
        if directory.endswith("final"):
            core = Path(directory) / "core-1.img"
            data = bytearray(core.read_bytes())
            data[3] ^= 0xFF
            core.write_bytes(bytes(data))
        return manifest

    monkeypatch.setattr(_manifest, "write", write_then_tamper)
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.source_state("paused"),
        harness.resume(),
    ]
    # No restore: the receiver checks the images first.
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check()]

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    final = harness.source_images / "final"
    assert str(outcome.error) == f"the receiver failed: images in {final} do not match the source's manifest: core-1.img: checksum mismatch"
    assert outcome.report["rolled_back"] is True
    assert outcome.report["recovery"] == RESUMED
    assert outcome.receiver["outcome"].startswith("rolled back: ")
    assert (final / "core-1.img").is_file()


def test_a_tampered_pre_dump_stops_before_the_freeze(migration, monkeypatch: pytest.MonkeyPatch):
    harness = migration(strategy="pre-copy")
    real_write = _manifest.write

    def write_then_truncate(directory: str) -> Dict[str, Any]:
        manifest = real_write(directory)
        if directory.endswith("pre1"):
            (Path(directory) / "pages-1.img").write_bytes(b"short")
        return manifest

    monkeypatch.setattr(_manifest, "write", write_then_truncate)
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.dump("pre1", "--pre-dump", stats="pre-dump")]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check()]

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    assert str(outcome.error).endswith(f"pages-1.img: 5 bytes, expected {PAGES_WRITTEN['pre-dump'] * PAGE_SIZE}")
    assert outcome.report["recovery"] == NOTHING_FROZEN
    assert outcome.report["rolled_back"] is False and "frozen_at" not in outcome.report
    # Before the freeze, the images are kept (only a failed prepare removes the directories).
    assert (harness.source_images / "pre1" / "inventory.img").is_file()
    assert harness.work.is_dir()


def test_a_failed_pre_dump_leaves_the_container_running_and_stops_the_waiting_page_server(migration):
    harness = migration(strategy="pre-copy", transport="page-server")
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.dump("pre1", "--pre-dump", "--page-server", PAGE_SERVER, rc=1),
    ]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.page_server("pre1")]

    outcome = harness.run()

    assert isinstance(outcome.error, MigrationFailed)
    assert outcome.error.step == "pre-dump round 1"
    assert outcome.error.cause == "criu failed: type PRE_DUMP errno 0"
    assert outcome.error.log == log_excerpt(str(FIXTURES / "dump-failed.log"))
    assert outcome.report["recovery"] == NOTHING_FROZEN
    # The page server waited for a dump that never came: the receiver stopped it (SIGTERM).
    assert harness.page_servers[0].wait(timeout=5) == -signal.SIGTERM


def test_a_failed_delete_of_the_source_copy_rolls_back_the_destination(migration):
    harness = migration()
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.delete_source(rc=1, err='level=error msg="unable to remove container state dir: device or resource busy"'),
        # A rollback may first make sure that the source copy can still be resumed.
        harness.source_state("paused", optional=True),
        harness.source_state("paused"),
        harness.resume(),
    ]
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(),
        harness.restore(),
        harness.delete_destination(),
    ]

    outcome = harness.run()

    assert isinstance(outcome.error, MigrationFailed)
    assert outcome.error.step == "delete the source copy"
    assert outcome.error.cause == "unable to remove container state dir: device or resource busy"
    assert outcome.report["rolled_back"] is True and outcome.report["source_deleted"] is False
    assert outcome.receiver["deleted_copy"] is True
    assert outcome.receiver["outcome"].startswith("rolled back: delete the source copy: ")


def test_the_destination_copy_is_kept_when_the_source_copy_cannot_be_resumed(migration):
    """The container must run somewhere: a source copy that `runc delete --force` already killed cannot be resumed,
    so the destination's running, complete copy must not be deleted."""
    harness = migration()
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.delete_source(rc=1, err='level=error msg="unable to remove container state dir: device or resource busy"'),
        harness.source_state("stopped", optional=True),
        harness.resume(rc=1, err='level=error msg="container not paused"', optional=True),
    ]
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(),
        harness.restore(),
        harness.delete_destination(optional=True),
    ]

    outcome = harness.run()

    assert "deleted_copy" not in outcome.receiver, (
        f"the destination deleted its running copy although the source copy could not be resumed: the container runs"
        f" nowhere (sender: {outcome.report.get('recovery')!r})"
    )


def test_a_failed_post_copy_transfer_deletes_the_broken_copy_and_resumes_the_source(migration):
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script()
    harness.lazy_daemon_script("fail")
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("paused"), harness.resume()]
    harness.receiver_steps = harness.lazy_restore_steps() + [harness.delete_destination()]

    outcome = harness.run()

    assert isinstance(outcome.error, MigrationFailed)
    assert outcome.error.step == "post-copy page transfer"
    assert outcome.error.cause == "the lazy-pages daemon exited with 1 before every page arrived"
    assert outcome.error.log == [
        "(00.2) uffd: 4242: fetching pages",
        "(00.3) Error (criu/uffd.c:1021): uffd: 4242: lost the page server",
    ]
    report = outcome.report
    assert report["lazy"]["ok"] is False and report["lazy"]["source_rc"] == 1
    assert report["rolled_back"] is True and report["source_deleted"] is False
    assert report["recovery"].startswith(RESUMED + "; in post-copy the destination's copy ran from its restore on")
    assert outcome.receiver["deleted_copy"] is True
    assert outcome.receiver["outcome"].startswith("rolled back: post-copy page transfer: ")
    assert (harness.source_images / "final" / "pstree.img").is_file()


def test_a_failed_lazy_restore_ends_the_lazy_dumps_criu_which_lets_the_source_run_on(migration):
    """A lazy dump's CRIU thaws the source's cgroup and holds its tasks while it serves pages: the rollback must end
    it (runc and its CRIU, whose group outlives runc), after which the source runs unpaused and needs no resume."""
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script(criu_child=True)
    harness.lazy_daemon_script("hang")
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("running")]
    harness.receiver_steps = harness.lazy_restore_steps(rc=1)

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    assert outcome.report["rolled_back"] is True
    assert outcome.report["recovery"].startswith(RESUMED)
    assert gone_within(IO_TIMEOUT, int((harness.tmp / "criu-child.pid").read_text()), "sleep\x0061\x00")


def gone_within(seconds: float, pid: int, cmdline: str) -> bool:
    """Whether pid stops running cmdline within seconds (a killed process dies when it is next scheduled)."""
    deadline = time.monotonic() + seconds
    while process_alive(pid, cmdline):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_lazy_restore_still_waiting_after_its_daemon_failed_is_ended(migration, monkeypatch: pytest.MonkeyPatch):
    """When the page stream fails as a post-copy restore begins, CRIU 3.17 waits for ever for the tasks it could not
    finish, and runc for CRIU: the receiver ends that CRIU after the grace period and reports both failures."""
    monkeypatch.setattr(_receiver, "LAZY_RESTORE_GRACE", 0.5)
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script()
    harness.lazy_daemon_script("fail-first")
    lazy = harness.work / "lazy"
    harness.sender_steps = [
        harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("paused"), harness.resume(),
    ]
    harness.receiver_steps = harness.lazy_restore_steps(rc=1, effect=harness.stuck_restore)

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    assert str(outcome.error) == (
        f"the receiver failed: runc restore failed: criu failed: type NOTIFY errno 0; log file: {lazy / 'restore.log'}"
        "; the lazy-pages daemon had failed first (exit code 1): no page could come from the source"
        "; CRIU's restore, still waiting 0.5 s later, was ended"
    )
    assert outcome.error.log == log_excerpt(str(FIXTURES / "restore-failed.log")) + [
        "(00.1) Error (criu/page-xfer.c:1545): page-xfer: Can't connect to server: Connection refused",
    ]
    assert outcome.receiver["ended_restore_criu"] is True
    assert outcome.report["rolled_back"] is True
    assert outcome.report["recovery"].startswith(RESUMED)


def process_alive(pid: int, cmdline: str) -> bool:
    """Whether pid runs cmdline: not gone, not a zombie its new parent has yet to reap, not a reused pid."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and Path(f"/proc/{pid}/cmdline").read_text() == cmdline
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_lazy_dump_that_ends_before_its_images_are_ready_resumes_the_source(migration):
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script(ready=False)
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("paused"), harness.resume()]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check()]

    outcome = harness.run()

    assert isinstance(outcome.error, MigrationFailed)
    assert outcome.error.step == "lazy final dump"
    assert outcome.error.cause == "runc checkpoint --lazy-pages ended before its images were ready"
    assert outcome.error.log == log_excerpt(str(FIXTURES / "dump-failed.log"))
    assert outcome.report["rolled_back"] is True
    assert outcome.receiver["outcome"].startswith("rolled back: lazy final dump: ")


# -- the connection drops after the restore ---------------------------------------------------------------


def test_a_restored_copy_keeps_running_when_the_connection_drops(migration):
    harness = migration()
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.source_state("paused"),
        harness.resume(),
    ]
    # No delete on the destination: the source may already have deleted its copy.
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.restore(effect=harness.drop_connection)]

    outcome = harness.run()

    assert outcome.receiver["outcome"].startswith("connection lost: ")
    assert outcome.receiver["outcome"].endswith("; the restored container keeps running here (the source may have deleted its copy)")
    assert "deleted_copy" not in outcome.receiver
    assert outcome.receiver["restore"] == dict(RESTORE_STATS, seconds=outcome.receiver["restore"]["seconds"])
    assert isinstance(outcome.error, ChannelError)
    assert outcome.report["receiver_unreachable"] is True
    assert outcome.report["rolled_back"] is True


def test_an_incomplete_lazy_copy_is_deleted_when_the_connection_drops(migration):
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script()
    harness.lazy_daemon_script("hang")
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("paused"), harness.resume()]
    harness.receiver_steps = harness.lazy_restore_steps(effect=harness.drop_connection) + [harness.delete_destination()]

    outcome = harness.run()

    assert outcome.receiver["outcome"].startswith("connection lost: ")
    assert outcome.receiver["outcome"].endswith("; the post-copy transfer was incomplete, so the restored copy was deleted")
    assert outcome.receiver["deleted_copy"] is True
    assert isinstance(outcome.error, ChannelError)
    assert outcome.report["receiver_unreachable"] is True
    assert outcome.report["rolled_back"] is True


def test_a_post_copy_connection_lost_after_the_restore_rolls_back_to_the_source(migration, monkeypatch: pytest.MonkeyPatch):
    """The restore answered, then the link died before the last page: the destination's copy is incomplete (its
    receiver deletes it), while the source, whose lazy dump's CRIU thawed it, looks "running". That is no sign of a
    lost source: the sender ends the lazy dump, after which the source runs on, and says the destination may run too."""
    harness = migration(strategy="post-copy")
    harness.lazy_runc_script()
    harness.lazy_daemon_script("hang")

    def link_dies(receiver: Receiver, directory: str) -> dict:
        harness.drop_connection()
        raise ChannelError("connection reset by peer")

    monkeypatch.setattr(Receiver, "_await_lazy_daemon", link_dies)
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump(), harness.pause(), harness.source_state("running")]
    harness.receiver_steps = harness.lazy_restore_steps() + [harness.delete_destination()]

    outcome = harness.run()

    assert isinstance(outcome.error, ChannelError)
    assert outcome.receiver["deleted_copy"] is True
    report = outcome.report
    assert report["rolled_back"] is True and report["source_deleted"] is False
    assert report["recovery"].startswith(RESUMED + "; in post-copy the destination's copy ran from its restore on")
    assert report["recovery"].endswith(f"may run one too: check it and delete one of the two (runc delete --force {CONTAINER})")


# -- a failed prepare changes nothing --------------------------------------------------------------------


def bundle_differs(harness: Migration) -> str:
    harness.destination_bundle = harness.tmp / "dst" / "bundles" / CONTAINER
    harness.destination_bundle.mkdir(parents=True)
    (harness.destination_bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": {"args": ["/bin/other"]}}')
    harness.receiver_params["bundle"] = str(harness.destination_bundle)
    harness.receiver_steps = [harness.destination_state()]
    return f"{harness.destination_bundle}/config.json differs from the source's: the bundle is not the same on both hosts"


def bundle_missing(harness: Migration) -> str:
    harness.receiver_params["bundle"] = str(harness.tmp / "dst" / "bundles" / CONTAINER)
    harness.receiver_steps = [harness.destination_state()]
    return f"the bundle is not reachable on the destination: {harness.tmp}/dst/bundles/{CONTAINER}/config.json is missing"


def container_exists(harness: Migration) -> str:
    harness.receiver_steps = [harness.destination_state(exists=True)]
    return f"a container named {CONTAINER} already exists on the destination"


def cpu_lacks_features(harness: Migration) -> str:
    harness.receiver_steps = [
        harness.destination_state(),
        harness.cpuinfo_check(rc=1, err="Error (criu/cpu.c:349): cpu: CPU has no avx512f\n"),
    ]
    return (
        "the destination's CPU lacks features of the source's, so the restored processes could crash"
        " (criu cpuinfo check: Error (criu/cpu.c:349): cpu: CPU has no avx512f)"
    )


def image_dir_exists(harness: Migration) -> str:
    harness.destination_images.mkdir()
    (harness.destination_images / "older").write_text("an earlier migration's file")
    harness.receiver_steps = [harness.destination_state()]
    return f"{harness.destination_images} exists already on the destination; choose another migration id"


def work_dir_exists(harness: Migration) -> str:
    harness.work.mkdir()
    (harness.work / "older").write_text("an earlier migration's file")
    harness.receiver_steps = [harness.destination_state()]
    return f"{harness.work} exists already on the destination; choose another migration id"


def share_not_mounted(harness: Migration) -> str:
    elsewhere = harness.tmp / "dst" / "unmounted" / "m1"
    elsewhere.mkdir(parents=True)
    harness.receiver_params["image_dir"] = str(elsewhere)
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check()]
    return f"{elsewhere} on the destination is not the source's image directory: mount the shared directory there"


def another_container(harness: Migration) -> str:
    harness.receiver_params["container"] = "c2"
    return f"this receiver is for container c2, not {CONTAINER}"


PREPARE_FAILURES = {
    "another container": ("shared", another_container),
    "container exists": ("shared", container_exists),
    "bundle differs": ("shared", bundle_differs),
    "bundle missing": ("shared", bundle_missing),
    "cpu lacks features (shared)": ("shared", cpu_lacks_features),
    "cpu lacks features (page-server)": ("page-server", cpu_lacks_features),
    "image dir exists": ("page-server", image_dir_exists),
    "work dir exists": ("page-server", work_dir_exists),
    "share not mounted": ("shared", share_not_mounted),
}


@pytest.mark.parametrize("transport, setup", PREPARE_FAILURES.values(), ids=PREPARE_FAILURES.keys())
def test_a_failed_prepare_freezes_nothing_and_removes_what_it_created(migration, transport, setup):
    harness = migration(strategy="pre-copy", transport=transport)
    cause = setup(harness)
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump()]

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    assert str(outcome.error) == f"the receiver failed: {cause}"
    report = outcome.report
    assert report["recovery"] == NOTHING_FROZEN
    assert report["rolled_back"] is False and "frozen_at" not in report and report["rounds"] == []
    assert outcome.receiver["outcome"] == f"rolled back: {outcome.error}"
    assert outcome.receiver["requests"][0]["type"] == "prepare"
    # Created directories are gone on both sides; directories that were there before are untouched.
    assert not harness.source_images.exists()
    assert harness.work.exists() is (setup is work_dir_exists)
    if not harness.shared:
        assert harness.destination_images.exists() is (setup is image_dir_exists)
    if setup is work_dir_exists:
        assert (harness.work / "older").is_file()
    if setup is image_dir_exists:
        assert (harness.destination_images / "older").is_file()


def test_a_bundle_copy_the_destination_cannot_write_ends_the_session_before_the_freeze(migration):
    harness = migration(bundle_sync="copy")
    (harness.tmp / "dst" / "not-a-directory").write_text("")
    target = harness.tmp / "dst" / "not-a-directory" / CONTAINER
    harness.receiver_params["bundle"] = str(target)
    harness.sender_steps = [harness.source_state(), harness.cpuinfo_dump()]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check()]

    outcome = harness.run()

    assert isinstance(outcome.error, PeerFailed)
    assert str(outcome.error) == f"the receiver failed: writing bundle on the destination failed: [Errno 20] Not a directory: '{target}'"
    assert outcome.receiver["outcome"] == f"connection lost: sync of bundle failed: [Errno 20] Not a directory: '{target}'"
    report = outcome.report
    assert report["recovery"] == NOTHING_FROZEN and report["receiver_unreachable"] is True
    assert report["rolled_back"] is False and "frozen_at" not in report
    # Before the freeze the directories are kept, as the images would be.
    assert harness.source_images.is_dir() and harness.work.is_dir()


def test_an_existing_image_directory_on_the_source_is_left_alone(migration):
    harness = migration()
    harness.source_images.mkdir()
    (harness.source_images / "older").write_text("an earlier migration's file")
    sender_module = FakeModule("sender", [harness.source_state()])

    with pytest.raises(MigrationFailed) as caught:
        Sender(sender_module, harness.sender_params, RUNC).run()

    assert caught.value.step == "preflight"
    assert caught.value.cause == f"the image directory {harness.source_images} exists already; choose another migration id"
    assert (harness.source_images / "older").is_file()
    sender_module.check()


def test_a_failed_cpuinfo_dump_removes_the_new_image_directory(migration):
    harness = migration()
    sender_module = FakeModule("sender", [harness.source_state(), harness.cpuinfo_dump(rc=1, err="cpuinfo: cannot read /proc/cpuinfo\n")])
    sender = Sender(sender_module, harness.sender_params, RUNC)

    with pytest.raises(MigrationFailed) as caught:
        sender.run()

    assert (caught.value.step, caught.value.cause) == ("preflight", "criu cpuinfo dump failed: cpuinfo: cannot read /proc/cpuinfo")
    assert sender.report["recovery"] == NOTHING_FROZEN
    assert not harness.source_images.exists()
    sender_module.check()


@pytest.mark.parametrize("status", ["paused", "stopped", None])
def test_only_a_running_container_is_migrated(migration, status):
    harness = migration()
    if status is None:
        step = Step(harness.runc("state", CONTAINER), rc=1, err="container c1 does not exist")
    else:
        step = harness.source_state(status)
    sender_module = FakeModule("sender", [step])

    with pytest.raises(MigrationFailed) as caught:
        Sender(sender_module, harness.sender_params, RUNC).run()

    assert caught.value.step == "preflight"
    assert caught.value.cause == f"container {CONTAINER} is {status or 'absent'} on the source, not running"
    assert not harness.source_images.exists()
    sender_module.check()


# -- the modules' main() --------------------------------------------------------------------------------


@pytest.fixture
def keep_sighup():
    """migration_sender.main() ignores SIGHUP for the rest of the process; put the handler back."""
    handler = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return sock.getsockname()[1]


def test_sender_main_names_the_step_when_the_receiver_is_unreachable(run_module, tmp_path: Path, keep_sighup):
    port = free_port()
    image_dir = tmp_path / "images" / "m1"
    bundle = tmp_path / "bundle"
    params = {"container": CONTAINER, "image_dir": str(image_dir), "strategy": "stop-and-copy", "receiver_address": ADDRESS,
              "receiver_port": port, "secret": SECRET, "connect_timeout": 1}
    commands = [
        {"argv": [RUNC, "--root", "/run/runc", "state", CONTAINER], "out": running_state(bundle)},
        {"argv": [CRIU, "cpuinfo", "dump", "-D", str(image_dir)]},
    ]

    result = run_module(migration_sender, params, commands)

    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(f"connect to the receiver failed: cannot reach the receiver at {ADDRESS}:{port}: ")
    assert result["msg"].endswith(f". {NOTHING_FROZEN[:1].upper()}{NOTHING_FROZEN[1:]}.")
    assert "Connection refused" in result["msg"]
    assert result["report"]["rolled_back"] is False and "frozen_at" not in result["report"]
    assert result["criu_log"] == []
    assert not image_dir.exists()


def test_sender_main_quotes_criu_log_and_says_the_source_was_resumed(migration, monkeypatch, capsys, keep_sighup):
    harness = migration()
    harness.sender_steps = [
        harness.source_state(),
        harness.cpuinfo_dump(),
        harness.pause(),
        harness.dump("final", "--leave-running"),
        harness.source_state("paused"),
        harness.resume(),
    ]
    harness.receiver_steps = [harness.destination_state(), harness.cpuinfo_check(), harness.restore(rc=1)]
    serving, receiver_module = harness.serve()
    sender_module = FakeModule("sender", harness.sender_steps)
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, args, **kwargs: sender_module.run_command(args, **kwargs))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: f"/usr/bin/{name}")
    params = {key: value for key, value in harness.sender_params.items() if value is not None}

    with patch_module_args(params), pytest.raises(SystemExit):
        migration_sender.main()

    result = json.loads(capsys.readouterr().out)
    harness.served(serving, receiver_module, sender_module)
    excerpt = log_excerpt(str(FIXTURES / "restore-failed.log"))
    restore_log = harness.work / "restore" / "restore.log"
    assert result["msg"] == (
        f"final dump and hand-over failed: the receiver failed: runc restore failed: criu failed: type NOTIFY errno 0;"
        f" log file: {restore_log}. CRIU log: {' | '.join(excerpt[-8:]).rstrip('.')}. {RESUMED[:1].upper()}{RESUMED[1:]}."
    )
    assert result["criu_log"] == excerpt
    assert result["changed"] is True
    assert result["report"]["rolled_back"] is True


def test_receiver_main_fails_when_no_sender_comes(run_module, tmp_path: Path):
    params = {"container": CONTAINER, "bundle": str(tmp_path / "bundle"), "image_dir": str(tmp_path / "images"),
              "work_dir": str(tmp_path / "work"), "listen_address": ADDRESS, "port": free_port(), "secret": SECRET,
              "connect_timeout": 1}

    result = run_module(migration_receiver, params)

    assert result["failed"] is True
    assert result["msg"] == f"receiving container {CONTAINER} failed: no sender connected within 1 s"
    assert not (tmp_path / "work").exists()


def test_receiver_main_fails_when_the_port_is_taken(run_module, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind((ADDRESS, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        params = {"container": CONTAINER, "bundle": str(tmp_path / "bundle"), "image_dir": str(tmp_path / "images"),
                  "work_dir": str(tmp_path / "work"), "listen_address": ADDRESS, "port": port, "secret": SECRET,
                  "connect_timeout": 1}

        result = run_module(migration_receiver, params)

    assert result["failed"] is True
    assert result["msg"].startswith(f"listen on {ADDRESS}:{port} failed: [Errno 98] ")


def test_receiver_main_reports_a_rolled_back_prepare(run_module, tmp_path: Path):
    port = free_port()
    params = {"container": CONTAINER, "bundle": str(tmp_path / "bundle"), "image_dir": str(tmp_path / "images"),
              "work_dir": str(tmp_path / "work"), "listen_address": ADDRESS, "port": port, "secret": SECRET,
              "connect_timeout": 10}
    answers: Dict[str, Any] = {}

    def sender() -> None:
        channel = connect(ADDRESS, port, SECRET, 10)
        try:
            channel.request("prepare", container=CONTAINER, strategy="stop-and-copy", transport="shared", bundle_config_sha256="0" * 64,
                            bundle_sync="copy", cpuinfo="", share_token="token")
        except PeerFailed as exc:
            answers["prepare"] = str(exc)
        answers["rollback"] = channel.request("rollback", reason="prepare failed")
        channel.close()

    client = threading.Thread(target=sender, daemon=True)
    client.start()
    commands = [{"argv": [RUNC, "--root", "/run/runc", "state", CONTAINER], "out": running_state(tmp_path / "bundle")}]

    result = run_module(migration_receiver, params, commands)
    client.join(10)

    assert answers == {"prepare": f"the receiver failed: a container named {CONTAINER} already exists on the destination",
                       "rollback": {"type": "ok"}}
    assert result["failed"] is True
    assert result["msg"] == f"migration of {CONTAINER} did not complete here: rolled back: prepare failed"
    assert [request["type"] for request in result["requests"]] == ["prepare"]
    assert not (tmp_path / "work").exists()
