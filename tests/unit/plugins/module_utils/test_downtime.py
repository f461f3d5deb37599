"""The downtime model (_downtime): the prediction term by term, the measured terms, and the learned costs; the cases of
the first two are in test_downtime.yaml."""

from __future__ import annotations

import pathlib
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.ferry.runc.plugins.module_utils import _downtime
from ansible_collections.ferry.runc.plugins.module_utils._downtime import KEPT_MIGRATIONS, MIB, TERMS, learn, measured_terms, predict

CASES = yaml.safe_load(pathlib.Path(__file__).with_suffix(".yaml").read_text(encoding="utf-8"))


def cases(table: str):
    return pytest.mark.parametrize("case", CASES[table], ids=[case["id"] for case in CASES[table]])


@cases("predict")
def test_predict(case: Dict[str, Any]):
    prediction = predict(case.get("strategy", "pre-copy"), case.get("transport", "shared"), case.get("rounds", []),
                         case.get("learned_costs", {}), case.get("memory_bytes"))
    for key in ("terms_ms", "total_ms"):
        if key in case:
            assert prediction[key] == pytest.approx(case[key]), key
    for key in ("largest_term", "unpredicted"):
        if key in case:
            assert prediction[key] == case[key], key
    assert set(prediction["terms_ms"]) | set(prediction["unpredicted"]) == set(TERMS)


@cases("measured_terms")
def test_measured_terms(case: Dict[str, Any]):
    terms = measured_terms(case["final"], case["phases"], case["downtime_ms"])
    assert terms == pytest.approx(case["terms_ms"])
    if terms:
        assert sum(terms.values()) == pytest.approx(case["downtime_ms"])


def report(migration_id: str = "web1-2", **changes: Any) -> Dict[str, Any]:
    base = {
        "migration_id": migration_id, "source": "src", "destination": "dst", "strategy": "stop-and-copy", "transport": "nfs",
        "outcome": "migrated", "final_dump": {"bytes_written": 64 * 1048576, "pages_scanned": 16384 * 2},
        "downtime_terms_ms": {"final_dump_fixed": 2400, "dirty_pages": 1920, "hand_over": 500, "restore": 8320, "release": 60},
    }
    return dict(base, **changes)


def test_learn_records_the_measured_terms_and_the_rates_under_the_senders_transport_name():
    assert learn({}, report()) == {"source": "src", "destination": "dst", "migrations": [{
        "migration_id": "web1-2", "strategy": "stop-and-copy", "transport": "shared", "final_dump_fixed_ms": 2400,
        "write_ms_per_mib": 30.0, "hand_over_ms": 500, "restore_ms": 8320, "restore_ms_per_mib": 65.0, "release_ms": 60,
    }]}


def test_learn_leaves_out_the_rates_it_cannot_derive():
    entry = learn({}, report(strategy="post-copy", transport="page-server", final_dump={}))["migrations"][0]
    assert (entry["transport"], entry["write_ms_per_mib"], entry["restore_ms_per_mib"]) == ("page-server", None, None)


@pytest.mark.parametrize("changes", [{"outcome": "rolled back"}, {"downtime_terms_ms": {}}], ids=["not-migrated", "not-measured"])
def test_learn_keeps_the_costs_of_a_migration_that_measured_nothing(changes):
    earlier = learn({}, report("web1-1"))
    assert learn(earlier, report(**changes)) == earlier


def test_learn_keeps_the_newest_migrations():
    costs: Dict[str, Any] = {}
    for number in range(KEPT_MIGRATIONS + 3):
        costs = learn(costs, report(f"web1-{number}"))
    assert [entry["migration_id"] for entry in costs["migrations"]] == [f"web1-{number}" for number in range(3, KEPT_MIGRATIONS + 3)]


def test_learn_replaces_a_migration_it_recorded_already():
    costs = learn(learn({}, report("web1-1")), report("web1-1", downtime_terms_ms=dict(report()["downtime_terms_ms"], release=99)))
    assert [(entry["migration_id"], entry["release_ms"]) for entry in costs["migrations"]] == [("web1-1", 99)]


@pytest.mark.parametrize(
    "memory_bytes, local_bytes, expected",
    [
        (64 * MIB, 16 * MIB, {"memory_local_mib": 16, "pages_missing": 48 * MIB // 4096}),
        (64 * MIB, 80 * MIB, {"memory_local_mib": 80, "pages_missing": 0}),
        (None, 16 * MIB, {"memory_local_mib": 16}),
        (64 * MIB, None, {}),
    ],
    ids=["some missing", "more than the source had", "source memory unknown", "destination memory unknown"],
)
def test_a_post_copy_progress_line_counts_the_pages_still_missing(memory_bytes, local_bytes, expected):
    assert _downtime.lazy_progress(memory_bytes, local_bytes) == expected
