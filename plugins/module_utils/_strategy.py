# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which strategy a migration uses (by the hosts' features, then for auto by the downtime model after a measured
pre-dump), and when iterative pre-copy stops."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

STRATEGIES = ("stop-and-copy", "pre-copy", "post-copy", "hybrid")
# Strategies that copy memory in pre-dump rounds while the container runs.
PRE_DUMPS = ("pre-copy", "hybrid")
# Strategies whose final dump leaves memory on the source (lazy pages), fetched after the restore.
LAZY = ("post-copy", "hybrid")
# From the shortest window in which the destination's copy runs with memory still on the source (none) to the longest
# (hybrid: the pages dirtied during the last round; post-copy: all of them): what breaks a tie of predicted downtimes.
DEGRADED_WINDOW_ORDER = ("stop-and-copy", "pre-copy", "hybrid", "post-copy")
# Predicted downtimes within this fraction of the shortest count as a tie.
TIE = 0.05
# Pre-copy stops over the budget once the dirty pages are at most this share of the predicted downtime: the rest is
# fixed costs (the final dump's fixed part, the restore), which more rounds do not shorten.
DIRTY_SHARE_WORTH_A_ROUND = 0.1


def any_lazy(strategies: Sequence[str]) -> bool:
    """Whether any of these strategies (a migration's, and those auto may switch to) takes a lazy final dump."""
    return any(strategy in LAZY for strategy in strategies)


def streams_pages(transport: str, strategies: Sequence[str]) -> bool:
    """Whether CRIU may send memory pages over the network (and so needs TLS) with any of these strategies: with the
    page server, or lazily."""
    return transport == "page-server" or any_lazy(strategies)


def transport_problem(strategy: str, transport: str) -> str | None:
    """Hybrid's lazy final dump finds its parent images only on the destination's disk: the shared directory
    (CRIU: "only the top-most page-read can be remote"; a lazy dump never asks a page server about parents)."""
    if strategy == "hybrid" and transport == "page-server":
        return "hybrid needs the nfs transport: CRIU's lazy final dump reads its parent images from the shared directory"
    return None


def choose(requested: str, source_features: Mapping[str, bool], destination_features: Mapping[str, bool],
           transport: str) -> tuple[str, str]:
    """Resolve 'auto' (or check a requested strategy) against what the two hosts' kernels and CRIU support, and the
    transport.

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
    if requested in PRE_DUMPS and not dirty_tracking:
        raise ValueError(f"{requested} needs dirty memory tracking on the source (criu check --feature mem_dirty_track failed there)")
    if requested in LAZY and not lazy_pages:
        raise ValueError(f"{requested} needs userfaultfd on the destination (criu check --feature uffd-noncoop failed there)")
    problem = transport_problem(requested, transport)
    if problem:
        raise ValueError(problem)
    return requested, "requested"


def supported(source_features: Mapping[str, bool], destination_features: Mapping[str, bool], transport: str) -> list[str]:
    """The strategies both hosts and the transport allow, in the order of STRATEGIES."""
    allowed = []
    for strategy in STRATEGIES:
        try:
            choose(strategy, source_features, destination_features, transport)
        except ValueError:
            continue
        allowed.append(strategy)
    return allowed


def candidates(requested: str, source_features: Mapping[str, bool], destination_features: Mapping[str, bool],
               transport: str) -> list[str]:
    """What auto chooses among after its first pre-dump round (by_model): every supported strategy, when the source
    can take that round (dirty tracking) and there is a choice; none otherwise (the features decide alone)."""
    allowed = supported(source_features, destination_features, transport)
    if requested != "auto" or "pre-copy" not in allowed or len(allowed) < 2:
        return []
    return allowed


def by_model(predictions: Mapping[str, Mapping[str, Any]], chosen: str) -> tuple[str, str]:
    """auto's choice once a pre-dump round is measured: the strategy with the shortest predicted downtime (within TIE
    of it, the one whose degraded window is shortest), and why. Partial predictions cannot be compared: when any
    strategy lacks a term, chosen (by the features) stays, and the reason names what was missing."""
    incomplete = sorted(name for name, prediction in predictions.items() if prediction["total_ms"] is None or prediction["unpredicted"])
    if incomplete:
        return chosen, (f"kept {chosen}, chosen by the features: no earlier migration between these hosts measured"
                        f" every term of {', '.join(incomplete)}, so the predicted downtimes cannot be compared")
    totals = {name: prediction["total_ms"] for name, prediction in predictions.items()}
    shortest = min(totals.values())
    tied = [name for name in DEGRADED_WINDOW_ORDER if name in totals and totals[name] <= shortest * (1 + TIE)]
    best = tied[0]
    others = ", ".join(f"{name} {totals[name]:.0f} ms" for name in DEGRADED_WINDOW_ORDER if name in totals and name != best)
    why = f"the shortest predicted downtime after one measured pre-dump: {best} {totals[best]:.0f} ms (then {others})"
    if len(tied) > 1:
        why += f"; within {TIE:.0%} of the shortest, it keeps the container's memory on the source for the shortest time"
    return best, why


def stop_reason(
    strategy: str, rounds: Sequence[Mapping[str, Any]], prediction: Mapping[str, Any], budget_ms: float, max_rounds: int,
    min_rounds: int, min_shrink: float
) -> str | None:
    """Why the pre-dump rounds stop after these, or None to run another round; prediction is the downtime the model
    (_downtime.predict) predicts for a freeze now. Hybrid's rounds shorten what the destination fetches after the
    restore, not the downtime (its final dump writes no memory): they go on while they shrink."""
    count = len(rounds)
    predicted = prediction["total_ms"]
    if count < min_rounds:
        return None
    if strategy in LAZY:
        return _rounds_done(rounds, max_rounds, min_shrink, "")
    if predicted <= budget_ms:
        # Without some terms the prediction is a lower bound: the report's budget line says whether it held.
        so_far = " so far (some terms unpredicted: no earlier migration between these hosts)" if prediction["unpredicted"] else ""
        return f"converged: predicted downtime {predicted:.0f} ms is within the budget of {budget_ms:.0f} ms{so_far}"
    dirty_ms = prediction["terms_ms"].get("dirty_pages")
    if dirty_ms is not None and dirty_ms <= DIRTY_SHARE_WORTH_A_ROUND * predicted:
        return (f"fixed costs left: the dirty pages are {dirty_ms:.0f} ms of the predicted downtime {predicted:.0f} ms,"
                f" which more rounds do not shorten")
    return _rounds_done(rounds, max_rounds, min_shrink, f"predicted downtime {predicted:.0f} ms")


def _rounds_done(rounds: Sequence[Mapping[str, Any]], max_rounds: int, min_shrink: float, note: str) -> str | None:
    """The rounds stop when the last wrote nothing, did not shrink enough, or at the limit; note goes in parentheses
    after why."""
    count = len(rounds)
    after = f" ({note})" if note else ""
    if count >= 2:
        previous, last = rounds[-2]["pages_written"], rounds[-1]["pages_written"]
        if last == 0:
            return f"nothing dirtied: round {count} wrote no pages{after}"
        if last > previous * (1 - min_shrink):
            return (f"not shrinking: round {count} wrote {last} pages after {previous}"
                    f" (each round must write at least {min_shrink:.0%} fewer{'; ' + note if note else ''})")
    if count >= max_rounds:
        return f"round limit: {max_rounds} rounds{after}"
    return None
