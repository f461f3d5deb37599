# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One report of a migration: where the time went and what moved, from the sender's, receiver's and controller's views."""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.ferry.runc.plugins.module_utils import _downtime

PAGE_STREAMS = {
    "none": "none (memory through the shared directory)",
    "tls": "TLS",
    "plaintext": "plaintext: the pages crossed the link unencrypted and unauthenticated",
}


def _sum(items: Any, key: str) -> float:
    return sum(item.get(key, 0) or 0 for item in items)


def build(plan: Mapping[str, Any], sender: Mapping[str, Any], receiver: Mapping[str, Any], controller: Mapping[str, float],
          settled: Mapping[str, Any]) -> dict[str, Any]:
    """Join the views.

    plan: what was decided before the migration (hosts, strategy and why, transport);
    sender: the sender agent's report; receiver: the receiver agent's result;
    controller: epoch seconds seen by the controller: started, sender_started, sender_ended, ended;
    settled: the resolution the controller carried out, or {} when the agents settled the migration themselves.
    """
    rounds = list(sender.get("rounds", []))
    final = dict(sender.get("final", {}))
    bundle_sync = list(sender.get("bundle_sync", []))
    precopy_seconds = _sum(rounds, "seconds") + _sum(rounds, "fetch_seconds")
    bytes_moved = {
        "pre_copy_pages": int(_sum(rounds, "bytes_written")),
        "final_pages": int(final.get("bytes_written", 0)),
        "final_images_over_channel": int(final.get("images_sent_bytes", 0)),
        "bundle": int(_sum(bundle_sync, "bytes")),
        "control_channel_overhead": 0,
    }
    channel_bytes = int(sender.get("channel_bytes", 0))
    bytes_moved["control_channel_overhead"] = max(0, channel_bytes - bytes_moved["final_images_over_channel"] - bytes_moved["bundle"])
    lazy = sender.get("lazy", {})
    controller_seconds = {
        "preflight": controller["sender_started"] - controller["started"],
        "migration": controller["sender_ended"] - controller["sender_started"],
        "report_and_cleanup": controller["ended"] - controller["sender_ended"],
    }
    return {
        "migration_id": plan["migration_id"],
        "container": plan["container"],
        "source": plan["source"],
        "destination": plan["destination"],
        # auto may have chosen again after its first pre-dump round: the sender says what it did and why.
        "strategy": sender.get("strategy") or plan["strategy"],
        "strategy_reason": sender.get("strategy_reason") or plan["strategy_reason"],
        "strategy_predictions_ms": sender.get("strategy_predictions_ms"),
        "transport": plan["transport"],
        "bundle_sync": plan["bundle_sync"],
        "bundle_passes": bundle_sync,
        "page_stream_tls": sender.get("page_stream") == "tls",
        "page_stream": PAGE_STREAMS.get(sender.get("page_stream", "none"), sender.get("page_stream")),
        "outcome": settled["outcome"] if _acted(settled) else _outcome(sender),
        "error": sender.get("error"),
        "recovery": _recovery(sender, settled),
        "phases": sender.get("phases", []),
        "pre_copy": {"rounds": rounds, "stop_reason": sender.get("stop_reason"), "seconds": round(precopy_seconds, 3)},
        "final_dump": final,
        "restore": sender.get("restore") or receiver.get("restore"),
        "post_copy_transfer_seconds": lazy.get("seconds"),
        "lazy_pages_fetched": lazy.get("pages_lazy"),
        "pages_restored_from_parents": lazy.get("pages_skipped_parent"),
        "frozen_ms_criu": final.get("frozen_ms"),
        "downtime_ms": sender.get("downtime_ms"),
        "memory_bytes": sender.get("memory_bytes"),
        **_downtime_against_budget(sender, final),
        "bytes": dict(bytes_moved, total=sum(bytes_moved.values())),
        "seconds": _phases_and_total(controller_seconds),
        "sender_seconds": sender.get("total_seconds"),
        "receiver": {"outcome": receiver.get("outcome"), "requests": receiver.get("requests", [])},
    }


def _downtime_against_budget(sender: Mapping[str, Any], final: Mapping[str, Any]) -> dict[str, Any]:
    """The budget, the prediction made just before the freeze, and the actual downtime with its terms."""
    budget, downtime = sender.get("downtime_budget_ms"), sender.get("downtime_ms")
    predicted = sender.get("predicted_downtime") or {}
    terms = _downtime.measured_terms(final, sender.get("phases", []), downtime)
    return {
        "downtime_budget_ms": budget,
        "downtime_budget_met": downtime <= budget if downtime is not None and budget is not None else None,
        "predicted_downtime_ms": predicted.get("total_ms"),
        "predicted_downtime_terms_ms": predicted.get("terms_ms", {}),
        "unpredicted_terms": predicted.get("unpredicted", list(_downtime.TERMS)),
        "downtime_terms_ms": terms,
        "downtime_largest_term": _downtime.largest(terms),
    }


def _phases_and_total(phases: Mapping[str, float]) -> dict[str, float]:
    """Each phase rounded to the millisecond, and their total from the rounded values, so that they add up."""
    seconds = {key: round(value, 3) for key, value in phases.items()}
    seconds["total"] = round(sum(seconds.values()), 3)
    return seconds


OUTCOMES = {
    "done": "migrated",
    "rolled back": "rolled back",
    "in doubt": "in doubt",
    "destination copy lost after the commit": "lost after the commit",
}


def _outcome(sender: Mapping[str, Any]) -> str:
    return OUTCOMES.get(sender.get("phase", ""), "failed")


def _acted(settled: Mapping[str, Any]) -> bool:
    """Whether the controller did something to settle the migration (its decision alone changes nothing)."""
    return bool(settled) and (settled["source_action"], settled["destination_action"]) != ("none", "none")


def _recovery(sender: Mapping[str, Any], settled: Mapping[str, Any]) -> str | None:
    if not _acted(settled):
        return sender.get("recovery")
    return f"{sender.get('recovery') or 'the agents lost each other'}; then the controller settled it: {settled['why']}"


def summary(report: Mapping[str, Any]) -> list[str]:
    """The report as a few readable lines."""
    lines = [
        f"{report['container']}: {report['source']} -> {report['destination']}: {report['outcome']}",
        f"strategy {report['strategy']} ({report['strategy_reason']}), transport {report['transport']}, bundle {report['bundle_sync']}",
    ]
    for round_ in report["pre_copy"]["rounds"]:
        lines.append(
            f"  pre-dump {round_['round']}: {round_['pages_written']} pages written, {round_['pages_skipped_parent']} skipped"
            f" (parent), {round_['seconds']} s"
        )
    if report["pre_copy"]["stop_reason"]:
        lines.append(f"  pre-copy stopped: {report['pre_copy']['stop_reason']}")
    if report["downtime_ms"] is not None:
        restore = report["restore"] or {}
        frozen = f"CRIU frozen {report['frozen_ms_criu']} ms, " if report["frozen_ms_criu"] is not None else ""
        lines.append(f"downtime {report['downtime_ms']} ms ({frozen}restore {restore.get('seconds')} s)")
    if report["downtime_budget_met"] is not None:
        lines.append(_budget_line(report))
    if report["post_copy_transfer_seconds"] is not None:
        lines.append(_lazy_line(report))
    seconds = report["seconds"]
    lines.append(
        f"time: preflight {seconds['preflight']} s + migration {seconds['migration']} s + report {seconds['report_and_cleanup']} s"
        f" = {seconds['total']} s; bytes moved {report['bytes']['total']}"
    )
    if report["recovery"]:
        lines.append(f"recovery: {report['recovery']}")
    return lines


def _lazy_line(report: Mapping[str, Any]) -> str:
    """hybrid: every page on the destination 1.2 s after the restore (300 fetched lazily, 16000 from the pre-dumps)"""
    line = f"{report['strategy']}: every page on the destination {report['post_copy_transfer_seconds']} s after the restore"
    if report["lazy_pages_fetched"] is not None:
        line += f" ({report['lazy_pages_fetched']} fetched lazily, {report['pages_restored_from_parents'] or 0} from the pre-dumps)"
    return line


def _budget_line(report: Mapping[str, Any]) -> str:
    """budget 1000 ms missed: predicted 513 ms, actual 7913 ms, largest term: restore 4300 ms"""
    verdict = "met" if report["downtime_budget_met"] else "missed"
    predicted = _downtime.describe(report["predicted_downtime_ms"], report["unpredicted_terms"])
    line = f"budget {report['downtime_budget_ms']} ms {verdict}: {predicted}, actual {report['downtime_ms']} ms"
    largest = report["downtime_largest_term"]
    if largest:
        line += f", largest term: {_downtime.term_label(largest)} {report['downtime_terms_ms'][largest]:.0f} ms"
    return line
