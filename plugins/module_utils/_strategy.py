# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which strategy a migration uses, and when iterative pre-copy stops."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

STRATEGIES = ("stop-and-copy", "pre-copy", "post-copy")


def choose(requested: str, source_features: Mapping[str, bool], destination_features: Mapping[str, bool]) -> tuple[str, str]:
    """Resolve 'auto' (or check a requested strategy) against what the two hosts' kernels and CRIU support.

    Returns the strategy and why it was chosen; raises ValueError naming the host and the missing feature.
    """
    dirty_tracking = bool(source_features.get("mem_dirty_track"))
    lazy_pages = bool(destination_features.get("uffd_noncoop"))
    if requested == "auto":
        if dirty_tracking:
            return "pre-copy", "the source tracks dirty memory (soft-dirty), so memory can be copied while the container runs"
        if lazy_pages:
            return "post-copy", "the source cannot track dirty memory but the destination has userfaultfd for lazy pages"
        return "stop-and-copy", "the source cannot track dirty memory and the destination lacks userfaultfd"
    if requested not in STRATEGIES:
        raise ValueError(f"unknown strategy {requested!r}; choose one of auto, {', '.join(STRATEGIES)}")
    if requested == "pre-copy" and not dirty_tracking:
        raise ValueError("pre-copy needs dirty memory tracking on the source (criu check --feature mem_dirty_track failed there)")
    if requested == "post-copy" and not lazy_pages:
        raise ValueError("post-copy needs userfaultfd on the destination (criu check --feature uffd-noncoop failed there)")
    return requested, "requested"


def stop_reason(
    rounds: Sequence[Mapping[str, Any]], predicted: float, budget_ms: float, max_rounds: int, min_rounds: int, min_shrink: float
) -> str | None:
    """Why pre-copy stops after these rounds, or None to run another round; predicted is the downtime the model
    (_downtime.predict) predicts for a freeze now, in milliseconds."""
    count = len(rounds)
    if count < min_rounds:
        return None
    if predicted <= budget_ms:
        return f"converged: predicted downtime {predicted:.0f} ms is within the budget of {budget_ms:.0f} ms"
    if count >= 2:
        previous, last = rounds[-2]["pages_written"], rounds[-1]["pages_written"]
        if last > previous * (1 - min_shrink):
            return (
                f"not shrinking: round {count} wrote {last} pages after {previous}"
                f" (each round must write at least {min_shrink:.0%} fewer; predicted downtime {predicted:.0f} ms)"
            )
    if count >= max_rounds:
        return f"round limit: {max_rounds} rounds (predicted downtime {predicted:.0f} ms)"
    return None
