"""Strategy choice and the pre-copy convergence rule (_strategy) on the downtime model's prediction (_downtime); the
cases are in test_strategy.yaml."""

from __future__ import annotations

import pathlib
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.ferry.runc.plugins.module_utils._downtime import predict
from ansible_collections.ferry.runc.plugins.module_utils._strategy import (
    STRATEGIES,
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
            choose(case["requested"], case["source"], case["destination"])
        message = str(caught.value)
    else:
        strategy, message = choose(case["requested"], case["source"], case["destination"])
        assert strategy == case["strategy"]
        assert strategy in STRATEGIES
    for part in case.get("error") or case["reason"]:
        assert part in message, f"{message!r} lacks {part!r}"


def test_choose_requested_reason_is_exactly_requested():
    assert choose("stop-and-copy", {}, {}) == ("stop-and-copy", "requested")


@cases("stop_reason")
def test_stop_reason(case: Dict[str, Any]):
    settings = {key: case.get(key, default) for key, default in STOP_DEFAULTS.items()}
    predicted = predict("pre-copy", "shared", case["rounds"], case.get("learned_costs", {}))["total_ms"]
    reason = stop_reason(case["rounds"], predicted, **settings)
    if case["reason"] is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(case["reason"][0]), reason
        for part in case["reason"]:
            assert part in reason, f"{reason!r} lacks {part!r}"
