# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The downtime model: the frozen window of a migration, term by term, predicted and measured.

The frozen window runs from the freeze until the destination's copy runs; its terms, in order:

- final_dump_fixed: freezing and collecting the tree, the final dump without the memory it writes;
- dirty_pages: writing the memory the final dump holds; none with post-copy and hybrid, whose final dump leaves
  memory on the source, fetched after the release;
- hand_over: from the final dump's end until the restore is requested (the images sent over the control channel
  with the page-server transport, the bundle update);
- restore: from the restore request until the commit (the held restore, which reads the images from the share or
  the page-server directory, with their check beside it; hybrid's reads the pre-dump rounds' pages too);
- release: from the commit until the receiver reported its copy running.

Each term comes from this migration's measurements where it has them (its pre-dump rounds), otherwise from earlier
migrations between the same two hosts with the same strategy and transport: their measured terms, which the migrate
role keeps on the controller (learn) and passes to the sender (learned costs).
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from ansible_collections.ferry.runc.plugins.module_utils._strategy import LAZY, PRE_DUMPS

PAGE_SIZE = 4096
MIB = 1024 * 1024
TERMS = ("final_dump_fixed", "dirty_pages", "hand_over", "restore", "release")
# How many migrations the learned costs keep, the newest last.
KEPT_MIGRATIONS = 10
# Earlier restores scale a prediction by memory once their containers' sizes are this far apart.
SCALING_SPAN = 2
NO_EARLIER_MIGRATION = "no earlier migration between these hosts"
# The report names the role's transport (nfs), the sender its own (shared): the learned costs use the sender's.
SENDER_TRANSPORTS = {"nfs": "shared"}


# -- prediction (the sender, before the freeze) -------------------------------------------------------------------


def predict(strategy: str, transport: str, rounds: Sequence[Mapping[str, Any]], learned_costs: Mapping[str, Any],
            memory_bytes: int | None = None) -> dict[str, Any]:
    """The predicted frozen window: terms_ms (the terms it could predict), total_ms (their sum, None without any),
    largest_term, and unpredicted (the terms neither this migration nor an earlier one measured).

    rounds: this migration's pre-dump rounds; memory_bytes: the container's memory, for a strategy without rounds."""
    earlier = _earlier(learned_costs, strategy, transport)
    if rounds:
        memory_bytes = rounds[-1].get("pages_scanned", 0) * PAGE_SIZE or memory_bytes
    terms = {
        "final_dump_fixed": _final_dump_fixed_ms(rounds, earlier),
        "dirty_pages": _dirty_pages_ms(strategy, rounds, earlier, memory_bytes),
        "hand_over": _median(earlier, "hand_over_ms"),
        "restore": _restore_ms(strategy, earlier, memory_bytes),
        "release": _median(earlier, "release_ms"),
    }
    predicted = {name: round(ms, 1) for name, ms in terms.items() if ms is not None}
    # Lazy dumps' dirty pages are none by construction: alone, they predict nothing.
    measured = [name for name in predicted if not (strategy in LAZY and name == "dirty_pages")]
    return {
        "terms_ms": predicted,
        "total_ms": round(sum(predicted.values()), 1) if measured else None,
        "largest_term": largest(predicted),
        "unpredicted": [name for name in TERMS if name not in predicted],
    }


def _final_dump_fixed_ms(rounds: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]]) -> float | None:
    """Earlier final dumps between these hosts, where there are any: a final dump's fixed part (collecting the whole
    tree, every image but memory, the parent check) is several times a pre-dump's frozen time, which is only the
    lower bound this migration's rounds give."""
    learned = _median(earlier, "final_dump_fixed_ms")
    if learned is not None or not rounds:
        return learned
    return rounds[-1]["frozen_ms"]


def _earlier(learned_costs: Mapping[str, Any], strategy: str, transport: str) -> list[Mapping[str, Any]]:
    return [entry for entry in learned_costs.get("migrations", [])
            if entry.get("strategy") == strategy and entry.get("transport") == transport]


def _median(entries: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in entries if entry.get(key) is not None]
    return statistics.median(values) if values else None


def _rate(byte_count: float, seconds: float) -> float | None:
    return byte_count / seconds if seconds > 0 and byte_count > 0 else None


def _dirty_pages_ms(strategy: str, rounds: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]],
                    memory_bytes: int | None) -> float | None:
    """The final dump writes about the pages the container dirtied during the last round, which is what that round
    wrote, at the source's write rate measured in that round (CRIU's memwrite time); the destination reads them in
    its restore. Without rounds it writes all of the container's memory, at the write rate of earlier final dumps;
    without a rate, the term is not predicted."""
    if strategy in LAZY:
        return 0.0
    if rounds:
        last = rounds[-1]
        if not last["pages_written"]:
            return 0.0
        rate = _rate(last.get("bytes_written", 0), last.get("write_seconds", 0.0))
        return last["pages_written"] * PAGE_SIZE / rate * 1000 if rate else None
    write_ms_per_mib = _median(earlier, "write_ms_per_mib")
    if write_ms_per_mib is None or memory_bytes is None:
        return None
    return write_ms_per_mib * memory_bytes / MIB


def _restore_ms(strategy: str, earlier: Sequence[Mapping[str, Any]], memory_bytes: int | None) -> float | None:
    """A fixed part plus a part per MiB the restore reads, fitted to earlier restores of containers at least
    SCALING_SPAN times apart in size; otherwise their median, because the fixed part (restoring the tree, the
    receiver's checks) is most of a restore up to hundreds of MiB and one size cannot tell the two parts apart.
    Post-copy's restore reads no memory (hybrid's reads the pre-dump rounds' pages)."""
    sized = [(mib, entry["restore_ms"]) for entry in earlier if (mib := _restored_mib(entry)) is not None]
    if strategy != "post-copy" and memory_bytes and sized:
        sizes = [mib for mib, restore_ms in sized]
        if max(sizes) >= SCALING_SPAN * min(sizes):
            fixed_ms, ms_per_mib = _line(sized)
            return fixed_ms + ms_per_mib * memory_bytes / MIB
    return _median(earlier, "restore_ms")


def _restored_mib(entry: Mapping[str, Any]) -> float | None:
    """The memory an earlier restore read, from its time and its time per MiB."""
    per_mib = entry.get("restore_ms_per_mib")
    return entry["restore_ms"] / per_mib if per_mib and entry.get("restore_ms") is not None else None


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares: intercept and slope, the slope at least 0 (a restore never gets faster with more memory)."""
    mean_x = statistics.fmean(x for x, y in points)
    mean_y = statistics.fmean(y for x, y in points)
    spread = sum((x - mean_x) ** 2 for x, y in points)
    slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in points) / spread) if spread else 0.0
    return max(0.0, mean_y - slope * mean_x), slope


def largest(terms_ms: Mapping[str, float]) -> str | None:
    return max(terms_ms, key=terms_ms.get) if terms_ms else None


def term_label(name: str) -> str:
    """A term's name as the progress and the summary write it: final dump fixed."""
    return name.replace("_", " ")


def describe(total_ms: float | None, unpredicted: Sequence[str]) -> str:
    """A prediction in words: predicted 2190 ms (without restore: no earlier migration between these hosts)."""
    if total_ms is None:
        return f"no prediction: {NO_EARLIER_MIGRATION}"
    text = f"predicted {total_ms:.0f} ms"
    if unpredicted:
        text += f" (without {', '.join(term_label(name) for name in unpredicted)}: {NO_EARLIER_MIGRATION})"
    return text


def plan(chosen: str, why: str, supported: Sequence[str], transport: str, learned_costs: Mapping[str, Any],
         memory_bytes: int | None, budget_ms: float) -> dict[str, Any]:
    """Before anything is frozen: the chosen strategy and why, each supported strategy's predicted downtime from the
    learned costs and the container's memory (pre-copy's and hybrid's dirty pages only come with their first round), and the plan's
    lines, which say when no strategy is predicted to meet the budget."""
    transport = SENDER_TRANSPORTS.get(transport, transport)
    predictions = {strategy: predict(strategy, transport, [], learned_costs, None if strategy in PRE_DUMPS else memory_bytes)
                   for strategy in supported}
    lines = [f"plan: {chosen} ({why})",
             f"{chosen}: {_verdict(predictions[chosen], budget_ms)}"]
    lines += [f"{strategy}: {_verdict(prediction, budget_ms)}" for strategy, prediction in predictions.items() if strategy != chosen]
    if all(prediction["total_ms"] is not None and prediction["total_ms"] > budget_ms for prediction in predictions.values()):
        best = min(predictions, key=lambda strategy: predictions[strategy]["total_ms"])
        lines.append(f"no strategy is predicted to meet the budget of {budget_ms} ms (the best: {best},"
                     f" {predictions[best]['total_ms']:.0f} ms)")
    return {"strategy": chosen, "why": why, "budget_ms": budget_ms, "predictions": predictions, "lines": lines}


def _verdict(prediction: Mapping[str, Any], budget_ms: float) -> str:
    """A strategy's prediction against the budget; a prediction without some terms is a lower bound."""
    text = describe(prediction["total_ms"], prediction["unpredicted"])
    if prediction["total_ms"] is None:
        return text
    if prediction["total_ms"] > budget_ms:
        return f"{text}, over the budget of {budget_ms} ms"
    if prediction["unpredicted"]:
        return f"{text}, within the budget of {budget_ms} ms so far"
    return f"{text}, within the budget of {budget_ms} ms"


def lazy_progress(memory_bytes: int | None, local_bytes: int | None) -> dict[str, int]:
    """A post-copy progress line's numbers: the memory the destination's copy holds, and the pages of the source's
    memory at the freeze that it does not hold yet (an estimate: the copy's own new memory counts as arrived)."""
    numbers = {}
    if local_bytes is not None:
        numbers["memory_local_mib"] = round(local_bytes / MIB)
        if memory_bytes is not None:
            numbers["pages_missing"] = max(0, memory_bytes - local_bytes) // PAGE_SIZE
    return numbers


# -- measurement (the controller, from the report) ----------------------------------------------------------------


def measured_terms(final: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], downtime_ms: float | None) -> dict[str, float]:
    """The terms of a migration's actual frozen window, from the sender's final dump record, its phases (epoch
    seconds, the source's clock, like the final dump's started_at) and the downtime; {} when it did not get as far as
    the release."""
    phase_at = {entry["phase"]: entry["at"] for entry in phases}
    if downtime_ms is None or "started_at" not in final or not {"restore requested", "committed"} <= set(phase_at):
        return {}
    frozen_at = final["started_at"]
    dump_seconds = final.get("seconds", final.get("images_ready_seconds", 0.0))
    write_seconds = final.get("write_seconds", 0.0)
    restore_requested_ms = (phase_at["restore requested"] - frozen_at) * 1000
    committed_ms = (phase_at["committed"] - frozen_at) * 1000
    return {
        "final_dump_fixed": round((dump_seconds - write_seconds) * 1000, 1),
        "dirty_pages": round(write_seconds * 1000, 1),
        "hand_over": round(max(0.0, restore_requested_ms - dump_seconds * 1000), 1),
        "restore": round(committed_ms - restore_requested_ms, 1),
        "release": round(max(0.0, downtime_ms - committed_ms), 1),
    }


def learn(learned_costs: Mapping[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
    """The learned costs with this migration's measured terms added (the last KEPT_MIGRATIONS kept); unchanged when the
    report measured none. Only numbers, the migration's id, strategy and transport go in: never anything secret."""
    migrations = [entry for entry in learned_costs.get("migrations", []) if entry.get("migration_id") != report["migration_id"]]
    entry = cost_entry(report)
    if entry:
        migrations.append(entry)
    return {"source": report["source"], "destination": report["destination"], "migrations": migrations[-KEPT_MIGRATIONS:]}


def cost_entry(report: Mapping[str, Any]) -> dict[str, Any] | None:
    terms = report.get("downtime_terms_ms") or {}
    if report.get("outcome") != "migrated" or not terms:
        return None
    final = report.get("final_dump") or {}
    written_mib = final.get("bytes_written", 0) / MIB
    memory_mib = final.get("pages_scanned", 0) * PAGE_SIZE / MIB
    return {
        "migration_id": report["migration_id"],
        "strategy": report["strategy"],
        "transport": SENDER_TRANSPORTS.get(report["transport"], report["transport"]),
        "final_dump_fixed_ms": terms["final_dump_fixed"],
        "write_ms_per_mib": round(terms["dirty_pages"] / written_mib, 3) if written_mib else None,
        "hand_over_ms": terms["hand_over"],
        "restore_ms": terms["restore"],
        "restore_ms_per_mib": round(terms["restore"] / memory_mib, 3) if memory_mib else None,
        "release_ms": terms["release"],
    }
