"""The filters migration_strategy (strategy choice, messages naming the hosts), migration_report (report and summary)
and migration_costs (the learned costs)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.runc.plugins.filter import migration_costs as costs_filter
from ansible_collections.ferry.runc.plugins.filter import migration_report as report_filter
from ansible_collections.ferry.runc.plugins.filter import migration_strategy as strategy_filter
from ansible_collections.ferry.runc.plugins.module_utils._report import build, summary

ALL = {"mem_dirty_track": True, "uffd": True, "uffd_noncoop": True}
NONE = {"mem_dirty_track": False, "uffd": False, "uffd_noncoop": False}


def choose(requested, source_features, destination_features, **hosts):
    return strategy_filter.migration_strategy(requested, source_features, destination_features, **hosts)


def test_the_filters_are_registered_under_their_names():
    assert strategy_filter.FilterModule().filters() == {"migration_strategy": strategy_filter.migration_strategy}
    assert report_filter.FilterModule().filters() == {"migration_report": report_filter.migration_report}
    assert costs_filter.FilterModule().filters() == {"migration_costs": costs_filter.migration_costs}


@pytest.mark.parametrize(
    "source, destination, strategy",
    [(ALL, ALL, "pre-copy"), (NONE, ALL, "post-copy"), (NONE, NONE, "stop-and-copy"), (ALL, NONE, "pre-copy")],
)
def test_auto_resolves_from_the_features(source, destination, strategy):
    result = choose("auto", source, destination, source="src1", destination="dst1")

    assert result["strategy"] == strategy
    assert set(result) == {"strategy", "why"} and result["why"]


def test_a_requested_strategy_that_both_hosts_support_is_kept():
    assert choose("post-copy", NONE, ALL) == {"strategy": "post-copy", "why": "requested"}
    assert choose("stop-and-copy", NONE, NONE) == {"strategy": "stop-and-copy", "why": "requested"}


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

    assert str(caught.value) == "unknown strategy 'live'; choose one of auto, stop-and-copy, pre-copy, post-copy"


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
