"""The filters migration_strategy (strategy choice, messages naming the hosts), migration_report (report and summary),
migration_costs (the learned costs) and migration_plan (the plan before the freeze)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.runc.plugins.filter import migration_costs as costs_filter
from ansible_collections.ferry.runc.plugins.filter import migration_plan as plan_filter
from ansible_collections.ferry.runc.plugins.filter import migration_report as report_filter
from ansible_collections.ferry.runc.plugins.filter import migration_strategy as strategy_filter
from ansible_collections.ferry.runc.plugins.module_utils._report import build, summary

ALL = {"mem_dirty_track": True, "uffd": True, "uffd_noncoop": True}
NONE = {"mem_dirty_track": False, "uffd": False, "uffd_noncoop": False}


def choose(requested, source_features, destination_features, transport="nfs", **hosts):
    return strategy_filter.migration_strategy(requested, source_features, destination_features, transport, **hosts)


def test_the_filters_are_registered_under_their_names():
    assert strategy_filter.FilterModule().filters() == {"migration_strategy": strategy_filter.migration_strategy}
    assert report_filter.FilterModule().filters() == {"migration_report": report_filter.migration_report}
    assert costs_filter.FilterModule().filters() == {"migration_costs": costs_filter.migration_costs}
    assert plan_filter.FilterModule().filters() == {"migration_plan": plan_filter.migration_plan}


@pytest.mark.parametrize(
    "source, destination, strategy, candidates, streams_pages",
    [(ALL, ALL, "pre-copy", ["stop-and-copy", "pre-copy", "post-copy", "hybrid"], True),
     (NONE, ALL, "post-copy", [], True),
     (NONE, NONE, "stop-and-copy", [], False),
     (ALL, NONE, "pre-copy", ["stop-and-copy", "pre-copy"], False)],
)
def test_auto_resolves_from_the_features_and_lists_what_it_may_choose_after_a_pre_dump(
        source, destination, strategy, candidates, streams_pages):
    result = choose("auto", source, destination, source="src1", destination="dst1")

    assert result["strategy"] == strategy
    assert result["candidates"] == candidates
    assert result["streams_pages"] is streams_pages
    assert set(result) == {"strategy", "why", "candidates", "streams_pages"} and result["why"]


def test_a_requested_strategy_that_both_hosts_support_is_kept():
    def kept(strategy, streams_pages):
        return {"strategy": strategy, "why": "requested", "candidates": [], "streams_pages": streams_pages}

    assert choose("post-copy", NONE, ALL) == kept("post-copy", True)
    assert choose("stop-and-copy", NONE, NONE) == kept("stop-and-copy", False)
    assert choose("hybrid", ALL, ALL) == kept("hybrid", True)
    assert choose("pre-copy", ALL, ALL, "page-server") == kept("pre-copy", True)


def test_hybrid_over_the_page_server_says_it_needs_nfs():
    with pytest.raises(AnsibleFilterError) as caught:
        choose("hybrid", ALL, ALL, "page-server", source="src1", destination="dst1")

    assert str(caught.value) == ("hybrid needs the nfs transport: CRIU's lazy final dump reads its parent images from the"
                                 " shared directory")


def test_pre_copy_without_dirty_tracking_names_the_source_host():
    with pytest.raises(AnsibleFilterError) as caught:
        choose("pre-copy", NONE, ALL, source="src1", destination="dst1")

    assert str(caught.value) == (
        "pre-copy needs dirty memory tracking on the source src1 (criu check --feature mem_dirty_track failed there)"
    )


def test_post_copy_without_userfaultfd_names_the_destination_host():
    with pytest.raises(AnsibleFilterError) as caught:
        choose("post-copy", ALL, NONE, source="src1", destination="dst1")

    assert str(caught.value) == "post-copy needs userfaultfd on the destination dst1 (criu check --feature uffd-noncoop failed there)"


def test_the_hosts_default_to_source_and_destination():
    with pytest.raises(AnsibleFilterError) as caught:
        choose("post-copy", ALL, NONE)

    assert "on the destination destination (" in str(caught.value)


def test_an_unknown_strategy_lists_the_choices():
    with pytest.raises(AnsibleFilterError) as caught:
        choose("live", ALL, ALL, source="src1", destination="dst1")

    assert str(caught.value) == "unknown strategy 'live'; choose one of auto, stop-and-copy, pre-copy, post-copy, hybrid"


PLAN = {"migration_id": "m1", "container": "web1", "source": "src1", "destination": "dst1", "strategy": "stop-and-copy",
        "strategy_reason": "requested", "transport": "shared", "bundle_sync": "shared"}
SENDER = {"container": "web1", "rounds": [], "stop_reason": None, "rolled_back": False, "source_deleted": True, "phase": "done", "frozen_at": 5.0,
          "final": {"round": 0, "seconds": 0.5, "pages_written": 10, "bytes_written": 40960, "frozen_ms": 512.0,
                    "pages_skipped_parent": 0},
          "restore": {"seconds": 0.7, "pages_restored": 10}, "downtime_ms": 1300, "channel_bytes": 5000, "total_seconds": 2.0}
RECEIVER = {"outcome": "committed", "requests": [{"type": "prepare", "seconds": 0.01}, {"type": "restore", "seconds": 0.7}]}
CONTROLLER = {"started": 1.0, "sender_started": 3.0, "sender_ended": 5.5, "ended": 6.0}


def test_the_report_filter_is_the_report_with_its_summary():
    report = report_filter.migration_report(PLAN, SENDER, RECEIVER, CONTROLLER)

    expected = build(PLAN, SENDER, RECEIVER, CONTROLLER, {})
    assert report == dict(expected, summary=summary(expected))
    assert report["summary"][0] == "web1: src1 -> dst1: migrated"
    assert report["summary"][-1] == "time: preflight 2.0 s + migration 2.5 s + report 0.5 s = 5.0 s; bytes moved 45960"
    assert report["bytes"]["total"] == 40960 + 5000


def test_the_costs_filter_learns_from_a_report_the_report_filter_built():
    sender = dict(SENDER, downtime_budget_ms=1000, final=dict(SENDER["final"], started_at=5.0, write_seconds=0.01),
                  phases=[{"phase": "restore requested", "at": 5.75}, {"phase": "committed", "at": 6.25}])
    report = report_filter.migration_report(PLAN, sender, RECEIVER, CONTROLLER)

    costs = costs_filter.migration_costs(None, report)

    assert costs == {"source": "src1", "destination": "dst1", "migrations": [{
        "migration_id": "m1", "strategy": "stop-and-copy", "transport": "shared", "final_dump_fixed_ms": 490.0,
        "write_ms_per_mib": 256.0, "hand_over_ms": 250.0, "restore_ms": 500.0, "restore_ms_per_mib": None, "release_ms": 50.0,
    }]}
    assert "budget 1000 ms missed: no prediction: no earlier migration between these hosts, actual 1300 ms," \
           " largest term: restore 500 ms" in report["summary"]


MIB = 1024 * 1024
STOP_AND_COPY_COSTS = {"migrations": [
    {"migration_id": "m1", "strategy": "stop-and-copy", "transport": "shared", "final_dump_fixed_ms": 2000.0,
     "write_ms_per_mib": 50.0, "hand_over_ms": 300.0, "restore_ms": 4000.0, "restore_ms_per_mib": 60.0, "release_ms": 20.0}]}


def plan(source, destination, costs, memory_bytes=64 * MIB, budget_ms=1000, requested="auto"):
    chosen = choose(requested, source, destination)
    return plan_filter.migration_plan(chosen, source, destination, "nfs", costs, memory_bytes, budget_ms)


def test_the_plan_predicts_every_supported_strategy_from_the_costs_and_the_memory():
    result = plan(NONE, NONE, STOP_AND_COPY_COSTS)
    assert list(result["predictions"]) == ["stop-and-copy"]
    predicted = result["predictions"]["stop-and-copy"]
    # 2000 fixed + 64 MiB at 50 ms/MiB + 300 + the one earlier restore (of 66.7 MiB) as it took + 20
    assert predicted["terms_ms"] == {"final_dump_fixed": 2000.0, "dirty_pages": 3200.0, "hand_over": 300.0, "restore": 4000.0,
                                     "release": 20.0}
    assert result["lines"] == [
        "plan: stop-and-copy (the source cannot track dirty memory and the destination lacks userfaultfd)",
        "stop-and-copy: predicted 9520 ms, over the budget of 1000 ms",
        "no strategy is predicted to meet the budget of 1000 ms (the best: stop-and-copy, 9520 ms)",
    ]


def test_without_earlier_migrations_the_plan_predicts_nothing_and_claims_nothing():
    result = plan(ALL, ALL, {})
    assert list(result["predictions"]) == ["stop-and-copy", "pre-copy", "post-copy", "hybrid"]
    assert result["lines"] == [
        "plan: pre-copy (the source tracks dirty memory (soft-dirty), so memory can be copied while the container runs)",
        "pre-copy: no prediction: no earlier migration between these hosts",
        "stop-and-copy: no prediction: no earlier migration between these hosts",
        "post-copy: no prediction: no earlier migration between these hosts",
        "hybrid: no prediction: no earlier migration between these hosts",
    ]


def test_pre_copy_leaves_its_dirty_pages_to_its_first_round_and_a_lower_bound_within_budget_is_not_a_promise():
    costs = {"migrations": [dict(STOP_AND_COPY_COSTS["migrations"][0], strategy="pre-copy", migration_id="m2",
                                 final_dump_fixed_ms=300.0, restore_ms=500.0)]}
    result = plan(ALL, NONE, costs, requested="pre-copy")
    predicted = result["predictions"]["pre-copy"]
    assert predicted["unpredicted"] == ["dirty_pages"]
    assert predicted["terms_ms"]["restore"] == 500.0  # planned without the memory (its rounds measure it): unscaled
    assert result["lines"][1] == ("pre-copy: predicted 1120 ms (without dirty pages: no earlier migration between these"
                                  " hosts), over the budget of 1000 ms")
    assert "no strategy" not in result["lines"][-1]  # stop-and-copy has no prediction: nothing can be said of it
