"""Strategy choice (by the features, and auto's by the model), and the pre-copy convergence rule (_strategy) on the downtime model's prediction (_downtime); the
cases are in test_strategy.yaml."""

from __future__ import annotations

import pathlib
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.ferry.runc.plugins.module_utils._downtime import TERMS, predict
from ansible_collections.ferry.runc.plugins.module_utils._strategy import (
    STRATEGIES,
    by_model,
    candidates,
    choose,
    stop_reason,
)

CASES = yaml.safe_load(pathlib.Path(__file__).with_suffix(".yaml").read_text(encoding="utf-8"))
STOP_DEFAULTS = {"budget_ms": 500, "max_rounds": 8, "min_rounds": 1, "min_shrink": 0.25}


def cases(table: str):
    return pytest.mark.parametrize("case", CASES[table], ids=[case["id"] for case in CASES[table]])


@cases("choose")
def test_choose(case: Dict[str, Any]):
    if "error" in case:
        with pytest.raises(ValueError) as caught:
            choose(case["requested"], case["source"], case["destination"], case.get("transport", "nfs"))
        message = str(caught.value)
    else:
        strategy, message = choose(case["requested"], case["source"], case["destination"], case.get("transport", "nfs"))
        assert strategy == case["strategy"]
        assert strategy in STRATEGIES
    for part in case.get("error") or case["reason"]:
        assert part in message, f"{message!r} lacks {part!r}"


def test_choose_requested_reason_is_exactly_requested():
    assert choose("stop-and-copy", {}, {}, "nfs") == ("stop-and-copy", "requested")


@cases("stop_reason")
def test_stop_reason(case: Dict[str, Any]):
    settings = {key: case.get(key, default) for key, default in STOP_DEFAULTS.items()}
    strategy = case.get("strategy", "pre-copy")
    prediction = predict(strategy, "shared", case["rounds"], case.get("learned_costs", {}))
    reason = stop_reason(strategy, case["rounds"], prediction, **settings)
    if case["reason"] is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(case["reason"][0]), reason
        for part in case["reason"]:
            assert part in reason, f"{reason!r} lacks {part!r}"


def whole(total_ms: float) -> Dict[str, Any]:
    return {"total_ms": total_ms, "unpredicted": []}


def test_by_model_takes_the_shortest_predicted_downtime_and_names_the_others():
    strategy, why = by_model({"pre-copy": whole(3000), "hybrid": whole(1200), "post-copy": whole(1600)}, "pre-copy")
    assert strategy == "hybrid"
    assert why == ("the shortest predicted downtime after one measured pre-dump: hybrid 1200 ms (then pre-copy 3000 ms,"
                   " post-copy 1600 ms)")


def test_by_model_breaks_a_tie_by_the_shorter_degraded_window():
    strategy, why = by_model({"post-copy": whole(1000), "hybrid": whole(1040), "stop-and-copy": whole(1049)}, "pre-copy")
    assert strategy == "stop-and-copy"
    assert "within 5% of the shortest" in why


def test_by_model_keeps_the_features_choice_when_a_prediction_is_partial():
    predictions = {"pre-copy": whole(900), "post-copy": {"total_ms": 300, "unpredicted": ["restore"]},
                   "stop-and-copy": {"total_ms": None, "unpredicted": list(TERMS)}}
    strategy, why = by_model(predictions, "pre-copy")
    assert strategy == "pre-copy"
    assert why == ("kept pre-copy, chosen by the features: no earlier migration between these hosts measured every term"
                   " of post-copy, stop-and-copy, so the predicted downtimes cannot be compared")


@pytest.mark.parametrize(("requested", "source", "destination", "transport", "expected"), [
    ("auto", {"mem_dirty_track": True}, {"uffd_noncoop": True}, "nfs", ["stop-and-copy", "pre-copy", "post-copy", "hybrid"]),
    ("auto", {"mem_dirty_track": True}, {"uffd_noncoop": True}, "page-server", ["stop-and-copy", "pre-copy", "post-copy"]),
    ("auto", {"mem_dirty_track": True}, {}, "nfs", ["stop-and-copy", "pre-copy"]),
    ("auto", {}, {"uffd_noncoop": True}, "nfs", []),  # no pre-dump to measure: the features decide
    ("pre-copy", {"mem_dirty_track": True}, {"uffd_noncoop": True}, "nfs", []),  # a requested strategy stays
])
def test_auto_chooses_after_a_pre_dump_among_what_both_hosts_support(requested, source, destination, transport, expected):
    assert candidates(requested, source, destination, transport) == expected


def test_a_whole_prediction_converges_without_a_reservation():
    prediction = {"total_ms": 400.0, "terms_ms": {"final_dump_fixed": 100.0, "dirty_pages": 300.0}, "unpredicted": []}
    reason = stop_reason("pre-copy", [{"pages_written": 10}], prediction, 500, 8, 1, 0.25)
    assert reason == "converged: predicted downtime 400 ms is within the budget of 500 ms"
