"""The migration report (_report): the three views joined, parts that add up to their totals, and the summary lines."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._report import build, summary

PLAN = {
    "migration_id": "web1-20261125",
    "container": "web1",
    "source": "src",
    "destination": "dst",
    "strategy": "pre-copy",
    "strategy_reason": "the source tracks dirty memory (soft-dirty), so memory can be copied while the container runs",
    "transport": "shared",
    "bundle_sync": "copy",
}


def precopy_round(number: int, pages: int, skipped: int, seconds: float, fetch_seconds: float) -> Dict[str, Any]:
    return {
        "round": number, "started_at": 1764110060.0 + number, "seconds": seconds, "pages_scanned": 1130,
        "pages_skipped_parent": skipped, "pages_written": pages, "bytes_written": pages * 4096, "write_seconds": 0.049,
        "frozen_ms": 269.2, "bytes_fetched": pages * 4096 + 1200, "fetch_seconds": fetch_seconds,
        "predicted_downtime_ms": 330,
    }


SENDER = {
    "container": "web1",
    "strategy": "pre-copy",
    "transport": "shared",
    "rounds": [precopy_round(1, 34, 0, 0.412, 0.021), precopy_round(2, 24, 9, 0.305, 0.013)],
    "stop_reason": "round limit: 2 rounds (predicted downtime 2190 ms)",
    "downtime_budget_ms": 1000,
    "predicted_downtime": {"terms_ms": {"final_dump_fixed": 269.2, "dirty_pages": 1.5, "hand_over": 120, "restore": 1700, "release": 99.3},
                           "total_ms": 2190, "largest_term": "restore", "unpredicted": []},
    "rolled_back": False,
    "source_deleted": True,
    "phase": "done",
    "bundle": "/srv/ferry-runc/bundles/web1",
    "bundle_sync": [{"step": "bundle copy", "bytes": 5_000_000, "seconds": 0.8}, {"step": "bundle update (frozen)", "bytes": 9, "seconds": 0.01}],
    "frozen_at": 1764110065.25,
    "phases": [{"phase": "frozen", "at": 1764110065.25}, {"phase": "restore requested", "at": 1764110067.75},
               {"phase": "committed", "at": 1764110069.625}, {"phase": "released", "at": 1764110069.67}],
    "final": {"round": 0, "started_at": 1764110065.25, "seconds": 2.31, "pages_scanned": 1130, "pages_skipped_parent": 9,
              "pages_written": 24, "bytes_written": 98304, "write_seconds": 0.005, "frozen_ms": 2185.2},
    "restore": {"pages_compared": 9, "pages_skipped_cow": 2, "forking_time": 6868, "restore_time": 1712579, "pages_restored": 31,
                "seconds": 1.95},
    "downtime_ms": 4420,
    "completed_seconds": 6.1,
    "channel_bytes": 5_012_345,
    "total_seconds": 6.2,
}
RECEIVER = {"container": "web1", "outcome": "committed", "requests": [{"type": "prepare", "seconds": 0.002}],
            "restore": SENDER["restore"], "channel_bytes": 5_012_345}
# Epoch seconds as the controller takes them (microseconds): each phase rounds on its own.
CONTROLLER = {"started": 1764110049.543509, "sender_started": 1764110058.53333, "sender_ended": 1764110097.628908,
              "ended": 1764110101.572525}


def sender_with(**changes: Any) -> Dict[str, Any]:
    sender = copy.deepcopy(SENDER)
    sender.update(changes)
    return {key: value for key, value in sender.items() if value is not None}


def test_the_report_says_whether_the_page_stream_used_tls():
    assert build(PLAN, sender_with(page_stream="tls"), RECEIVER, CONTROLLER, {})["page_stream_tls"] is True


def test_the_report_lists_the_bundle_passes_with_what_they_skipped():
    passes = [{"step": "bundle copy", "bytes": 10, "seconds": 0.1, "skipped": ["rootfs/dev/null"]}]
    assert build(PLAN, sender_with(bundle_sync=passes), RECEIVER, CONTROLLER, {})["bundle_passes"] == passes


def test_the_report_says_when_pages_crossed_the_link_unauthenticated():
    report = build(PLAN, sender_with(page_stream="plaintext"), RECEIVER, CONTROLLER, {})
    assert report["page_stream_tls"] is False
    assert report["page_stream"] == "plaintext: the pages crossed the link unencrypted and unauthenticated"


def test_the_report_joins_the_plan_and_both_sides():
    report = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})

    for key in ("migration_id", "container", "source", "destination", "strategy", "strategy_reason", "transport", "bundle_sync"):
        assert report[key] == PLAN[key]
    assert report["outcome"] == "migrated"
    assert report["recovery"] is None
    assert report["pre_copy"]["rounds"] == SENDER["rounds"]
    assert report["pre_copy"]["stop_reason"] == SENDER["stop_reason"]
    assert report["final_dump"] == SENDER["final"]
    assert report["restore"] == SENDER["restore"]
    assert report["frozen_ms_criu"] == 2185.2
    assert report["downtime_ms"] == 4420
    assert report["post_copy_transfer_seconds"] is None
    assert report["sender_seconds"] == 6.2
    assert report["page_stream_tls"] is False
    assert report["receiver"] == {"outcome": "committed", "requests": RECEIVER["requests"]}


def test_pre_copy_time_is_the_rounds_dumps_plus_the_receivers_checks():
    report = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})

    assert report["pre_copy"]["seconds"] == round(0.412 + 0.021 + 0.305 + 0.013, 3)


def test_the_bytes_add_up_to_the_total():
    report = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})

    moved = report["bytes"]
    assert moved["pre_copy_pages"] == (34 + 24) * 4096
    assert moved["final_pages"] == 24 * 4096
    assert moved["final_images_over_channel"] == 0
    assert moved["bundle"] == 5_000_009
    assert moved["control_channel_overhead"] == 5_012_345 - 5_000_009
    assert moved["total"] == sum(value for key, value in moved.items() if key != "total")


def test_images_sent_over_the_channel_are_not_counted_as_overhead():
    sender = sender_with(final=dict(SENDER["final"], images_sent_bytes=7000), bundle_sync=[], channel_bytes=9000)

    moved = build(PLAN, sender, RECEIVER, CONTROLLER, {})["bytes"]

    assert (moved["final_images_over_channel"], moved["bundle"], moved["control_channel_overhead"]) == (7000, 0, 2000)
    assert moved["total"] == sum(value for key, value in moved.items() if key != "total")


def test_the_overhead_is_never_negative():
    moved = build(PLAN, sender_with(channel_bytes=None), RECEIVER, CONTROLLER, {})["bytes"]

    assert moved["control_channel_overhead"] == 0
    assert moved["total"] == sum(value for key, value in moved.items() if key != "total")


def test_the_phases_add_up_to_the_total_time():
    seconds = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})["seconds"]

    assert seconds["preflight"] == round(CONTROLLER["sender_started"] - CONTROLLER["started"], 3)
    assert seconds["migration"] == round(CONTROLLER["sender_ended"] - CONTROLLER["sender_started"], 3)
    assert seconds["report_and_cleanup"] == round(CONTROLLER["ended"] - CONTROLLER["sender_ended"], 3)
    phases = seconds["preflight"] + seconds["migration"] + seconds["report_and_cleanup"]
    assert seconds["total"] == round(phases, 3), f"the phases {seconds} add up to {round(phases, 3)}, not to the total"


OUTCOMES = {
    "migrated": ({}, "migrated"),
    "rolled back": ({"phase": "rolled back", "source_deleted": False, "rolled_back": True, "recovery": "resumed"}, "rolled back"),
    "in doubt": ({"phase": "in doubt", "source_deleted": False, "recovery": "IN DOUBT: ..."}, "in doubt"),
    "lost after the commit": ({"phase": "destination copy lost after the commit", "recovery": "runc resume web1"}, "lost after the commit"),
    "an agent that never ended": ({"phase": "released"}, "failed"),
}


@pytest.mark.parametrize("changes, outcome", OUTCOMES.values(), ids=OUTCOMES.keys())
def test_the_outcome(changes: Dict[str, Any], outcome: str):
    report = build(PLAN, sender_with(**changes), RECEIVER, CONTROLLER, {})

    assert report["outcome"] == outcome
    assert report["recovery"] == changes.get("recovery")


def test_a_migration_the_controller_settled_takes_its_outcome_and_says_how():
    settled = {"outcome": "migrated", "why": "the destination runs the container", "source_action": "delete",
               "destination_action": "none"}
    report = build(PLAN, sender_with(phase="in doubt", recovery="IN DOUBT: ..."), RECEIVER, CONTROLLER, settled)

    assert report["outcome"] == "migrated"
    assert report["recovery"] == "IN DOUBT: ...; then the controller settled it: the destination runs the container"


def test_a_decision_that_changed_nothing_leaves_the_senders_outcome():
    settled = {"outcome": "rolled back", "why": "the source runs the container", "source_action": "none",
               "destination_action": "none"}
    report = build(PLAN, sender_with(phase="rolled back", recovery="resumed"), RECEIVER, CONTROLLER, settled)

    assert (report["outcome"], report["recovery"]) == ("rolled back", "resumed")


def test_the_receivers_restore_is_used_when_the_sender_has_none():
    sender = sender_with(restore=None, downtime_ms=None, source_deleted=False)

    assert build(PLAN, sender, RECEIVER, CONTROLLER, {})["restore"] == RECEIVER["restore"]


def test_a_post_copy_report_has_its_transfer_time():
    sender = sender_with(strategy="post-copy", rounds=[], stop_reason=None, lazy={"ok": True, "seconds": 3.5, "source_rc": 0})

    report = build(PLAN, sender, RECEIVER, CONTROLLER, {})

    assert report["post_copy_transfer_seconds"] == 3.5
    assert report["pre_copy"] == {"rounds": [], "stop_reason": None, "seconds": 0}
    assert report["lazy_pages_fetched"] is None
    assert "post-copy: every page on the destination 3.5 s after the restore" in summary(report)


def test_a_hybrid_report_counts_the_pages_fetched_lazily_and_those_from_the_rounds():
    sender = sender_with(strategy="hybrid", lazy={"ok": True, "seconds": 1.2, "source_rc": 0, "pages_lazy": 300, "pages_skipped_parent": 16000})

    report = build(PLAN, sender, RECEIVER, CONTROLLER, {})

    assert (report["lazy_pages_fetched"], report["pages_restored_from_parents"]) == (300, 16000)
    assert ("hybrid: every page on the destination 1.2 s after the restore (300 fetched lazily, 16000 from the"
            " pre-dumps)") in summary(report)


def test_the_strategy_is_the_one_the_sender_went_on_with_after_auto_chose_again():
    why = "the shortest predicted downtime after one measured pre-dump: hybrid 900 ms (then pre-copy 1500 ms)"
    sender = sender_with(strategy="hybrid", strategy_reason=why, strategy_predictions_ms={"pre-copy": 1500.0, "hybrid": 900.0})

    report = build(PLAN, sender, RECEIVER, CONTROLLER, {})

    assert (report["strategy"], report["strategy_reason"]) == ("hybrid", why)
    assert report["strategy_predictions_ms"] == {"pre-copy": 1500.0, "hybrid": 900.0}
    assert build(PLAN, SENDER, RECEIVER, CONTROLLER, {})["strategy_reason"] == PLAN["strategy_reason"]


def test_the_summary_of_a_migration():
    report = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})
    seconds = report["seconds"]

    assert summary(report) == [
        "web1: src -> dst: migrated",
        f"strategy pre-copy ({PLAN['strategy_reason']}), transport shared, bundle copy",
        "  pre-dump 1: 34 pages written, 0 skipped (parent), 0.412 s",
        "  pre-dump 2: 24 pages written, 9 skipped (parent), 0.305 s",
        "  pre-copy stopped: round limit: 2 rounds (predicted downtime 2190 ms)",
        "downtime 4420 ms (CRIU frozen 2185.2 ms, restore 1.95 s)",
        "budget 1000 ms missed: predicted 2190 ms, actual 4420 ms, largest term: final dump fixed 2305 ms",
        f"time: preflight {seconds['preflight']} s + migration {seconds['migration']} s + report {seconds['report_and_cleanup']} s"
        f" = {seconds['total']} s; bytes moved {report['bytes']['total']}",
    ]


def test_the_report_holds_the_downtime_against_its_budget_and_the_prediction():
    report = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})

    assert (report["downtime_budget_ms"], report["downtime_budget_met"]) == (1000, False)
    assert report["predicted_downtime_ms"] == 2190
    assert report["predicted_downtime_terms_ms"] == SENDER["predicted_downtime"]["terms_ms"]
    assert report["unpredicted_terms"] == []
    assert report["downtime_terms_ms"] == {"final_dump_fixed": 2305, "dirty_pages": 5, "hand_over": 190, "restore": 1875, "release": 45}
    assert report["downtime_largest_term"] == "final_dump_fixed"


def budget_line(report: Dict[str, Any]) -> str:
    return next(line for line in summary(report) if line.startswith("budget "))


BUDGET_LINES = {
    "met": ({"downtime_budget_ms": 5000}, "budget 5000 ms met: predicted 2190 ms, actual 4420 ms, largest term: final dump fixed 2305 ms"),
    "no prediction": (
        {"predicted_downtime": {"terms_ms": {}, "total_ms": None, "largest_term": None,
                                "unpredicted": ["final_dump_fixed", "dirty_pages", "hand_over", "restore", "release"]}},
        "budget 1000 ms missed: no prediction: no earlier migration between these hosts, actual 4420 ms,"
        " largest term: final dump fixed 2305 ms",
    ),
    "a partial prediction": (
        {"predicted_downtime": {"terms_ms": {"final_dump_fixed": 269.2, "dirty_pages": 243.4}, "total_ms": 512.6,
                                "largest_term": "final_dump_fixed", "unpredicted": ["hand_over", "restore", "release"]}},
        "budget 1000 ms missed: predicted 513 ms (without hand over, restore, release: no earlier migration between these"
        " hosts), actual 4420 ms, largest term: final dump fixed 2305 ms",
    ),
    "no phases": ({"phases": None}, "budget 1000 ms missed: predicted 2190 ms, actual 4420 ms"),
}


@pytest.mark.parametrize("changes, line", BUDGET_LINES.values(), ids=BUDGET_LINES.keys())
def test_the_summary_says_whether_the_budget_was_met(changes: Dict[str, Any], line: str):
    assert budget_line(build(PLAN, sender_with(**changes), RECEIVER, CONTROLLER, {})) == line


def test_without_a_downtime_there_is_no_budget_line():
    report = build(PLAN, sender_with(downtime_ms=None, phase="rolled back", recovery="resumed"), RECEIVER, CONTROLLER, {})

    assert report["downtime_budget_met"] is None
    assert not [line for line in summary(report) if line.startswith("budget ")]


def test_the_summary_of_a_migration_rolled_back_before_the_freeze():
    sender = {"container": "web1", "strategy": "stop-and-copy", "transport": "shared", "rounds": [], "stop_reason": None,
              "rolled_back": False, "source_deleted": False, "recovery": "nothing was frozen; the container kept running on the source",
              "total_seconds": 0.4, "phase": "rolled back"}
    receiver = {"container": "web1", "outcome": "rolled back: the receiver failed: ...", "requests": []}
    controller = {"started": 10.0, "sender_started": 12.5, "sender_ended": 13.0, "ended": 13.25}

    report = build(dict(PLAN, strategy="stop-and-copy"), sender, receiver, controller, {})

    assert report["outcome"] == "rolled back"
    assert report["bytes"]["total"] == 0
    assert report["seconds"] == {"preflight": 2.5, "migration": 0.5, "report_and_cleanup": 0.25, "total": 3.25}
    assert summary(report) == [
        "web1: src -> dst: rolled back",
        f"strategy stop-and-copy ({PLAN['strategy_reason']}), transport shared, bundle copy",
        "time: preflight 2.5 s + migration 0.5 s + report 0.25 s = 3.25 s; bytes moved 0",
        "recovery: nothing was frozen; the container kept running on the source",
    ]
