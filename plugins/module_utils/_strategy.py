# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which strategy a migration uses, and when iterative pre-copy stops."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

PAGE_SIZE = 4096
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


def _rate(byte_count: int, seconds: float) -> float | None:
    return byte_count / seconds if seconds > 0 and byte_count > 0 else None


def predict_final_frozen_ms(rounds: Sequence[Mapping[str, Any]]) -> float:
    """Predict the final dump's frozen time from the last pre-dump round.

    The final dump must write about the pages the container dirtied during the last round, which is what that
    round wrote. Their time is the bytes divided by each measured rate on their path: the source's write rate
    (CRIU's memwrite time) and, with shared storage, the destination's read rate measured when it fetched and
    checked that round's images. Freezing and collecting the tree costs at least the last round's frozen time.
    """
    last = rounds[-1]
    dirty_bytes = last["pages_written"] * PAGE_SIZE
    seconds = 0.0
    for bytes_key, seconds_key in (("bytes_written", "write_seconds"), ("bytes_fetched", "fetch_seconds")):
        rate = _rate(last.get(bytes_key, 0), last.get(seconds_key, 0.0))
        if rate:
            seconds += dirty_bytes / rate
    return last["frozen_ms"] + seconds * 1000


def stop_reason(
    rounds: Sequence[Mapping[str, Any]], budget_ms: float, max_rounds: int, min_rounds: int, min_shrink: float
) -> str | None:
    """Why pre-copy stops after these rounds, or None to run another round."""
    count = len(rounds)
    if count < min_rounds:
        return None
    predicted = predict_final_frozen_ms(rounds)
    if predicted <= budget_ms:
        return f"converged: predicted frozen time {predicted:.0f} ms is within the budget of {budget_ms:.0f} ms"
    if count >= 2:
        previous, last = rounds[-2]["pages_written"], rounds[-1]["pages_written"]
        if last > previous * (1 - min_shrink):
            return (
                f"not shrinking: round {count} wrote {last} pages after {previous}"
                f" (each round must write at least {min_shrink:.0%} fewer; predicted frozen time {predicted:.0f} ms)"
            )
    if count >= max_rounds:
        return f"round limit: {max_rounds} rounds (predicted frozen time {predicted:.0f} ms)"
    return None
