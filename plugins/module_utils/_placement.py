# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evacuation's plan: which of a host's running containers go where, and why the others stay.

Each host is read once (runc_info with details on the source, with the source's CPU image and bind sources on each
destination); the plan is made from those readings alone. Containers are placed largest first; each goes to the
compatible destination with the most memory left after the containers placed before it.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Sequence

from ansible_collections.ferry.runc.plugins.module_utils._downtime import describe, plan
from ansible_collections.ferry.runc.plugins.module_utils._strategy import choose, streams_pages

MODES = ("live-migrate", "stop", "skip")
# The annotation of a container's config.json that sets its mode, as Incus' cluster.evacuate does per instance.
MODE_ANNOTATION = "ferry.runc.evacuate"
MIB = 1024 * 1024


def selected(container: Mapping[str, Any], ids: Sequence[str], pattern: str, annotation: str) -> bool:
    """Whether the request names this container: by ID, by a shell-style name pattern, by an annotation (KEY or
    KEY=VALUE); all of them when none is given."""
    if not (ids or pattern or annotation):
        return True
    annotations = container.get("annotations") or {}
    key, has_value, value = annotation.partition("=")
    return (
        container["id"] in ids
        or bool(pattern) and fnmatch.fnmatchcase(container["id"], pattern)
        or bool(annotation) and key in annotations and (not has_value or annotations[key] == value)
    )


def mode_of(container: Mapping[str, Any], default_mode: str, modes: Mapping[str, str]) -> tuple[str, str]:
    """The container's mode and where it comes from: the variable's entry for its ID, its annotation, the default."""
    if container["id"] in modes:
        return modes[container["id"]], "evacuate_modes"
    annotated = (container.get("annotations") or {}).get(MODE_ANNOTATION)
    if annotated is not None:
        return annotated, f"annotation {MODE_ANNOTATION}"
    return default_mode, "evacuate_mode"


def refusals(container: Mapping[str, Any], host: str, info: Mapping[str, Any], strategy: str,
             source_features: Mapping[str, bool], transport: str) -> list[str]:
    """Why host cannot take container, apart from memory: empty when it can."""
    if info.get("failed") or info.get("unreachable"):
        return [f"{host} could not be read: {info.get('msg', 'no answer')}"]
    reasons = []
    if not info["criu_check"]["passed"]:
        reasons.append(f"CRIU does not work on {host} (criu check: {info['criu_check']['output']})")
    if not info["cpu_check"]["passed"]:
        reasons.append(f"the CPU of {host} lacks features of the source's (criu cpuinfo check: {info['cpu_check']['output']})")
    if container["id"] in {other["id"] for other in info["containers"]}:
        reasons.append(f"a container {container['id']} exists on {host} already")
    missing = sorted(set(container.get("bind_sources") or []) & set(info.get("missing_paths") or []))
    if missing:
        reasons.append(f"{host} lacks the bind-mount sources {', '.join(missing)}")
    try:
        choose(strategy, source_features, info["features"], transport)
    except ValueError as exc:
        reasons.append(f"{host}: {exc}")
    return reasons


def needed_bytes(container: Mapping[str, Any], margin_mib: int) -> int:
    return (container.get("memory_bytes") or 0) + margin_mib * MIB


def memory_refusal(host: str, free_bytes: int | None, container: Mapping[str, Any], margin_mib: int) -> list[str]:
    """Why host's memory left after the containers placed before cannot hold this one: empty when it can."""
    if free_bytes is None:
        return [f"{host} does not say how much memory it has available"]
    needed = needed_bytes(container, margin_mib)
    if free_bytes < needed:
        return [f"{host} has {free_bytes // MIB} MiB available after the containers placed before this one, "
                f"and this one needs {needed // MIB} MiB (its memory and the margin of {margin_mib} MiB)"]
    return []


def place(source: str, source_info: Mapping[str, Any], destinations: Mapping[str, Mapping[str, Any]],
          request: Mapping[str, Any]) -> dict[str, Any]:
    """The plan for every selected running container of source: its entry per container (in the order placed) and
    the plan in words.

    request: ids, pattern, annotation (the selection), mode and modes (the policy), memory_margin_mib, strategy,
    transport, budget_ms, learned_costs (per destination host)."""
    running = [container for container in source_info["containers"] if container.get("status") == "running"]
    chosen = [container for container in running if selected(container, request["ids"], request["pattern"], request["annotation"])]
    chosen.sort(key=lambda container: (-(container.get("memory_bytes") or 0), container["id"]))
    free = {host: info.get("memory_available_bytes") for host, info in destinations.items()}
    entries = [_entry(container, source, source_info, destinations, free, request) for container in chosen]
    return {"entries": entries, "lines": [_line(source, entry) for entry in entries]}


def _entry(container: Mapping[str, Any], source: str, source_info: Mapping[str, Any],
           destinations: Mapping[str, Mapping[str, Any]], free: dict[str, int | None], request: Mapping[str, Any]) -> dict[str, Any]:
    mode, mode_from = mode_of(container, request["mode"], request["modes"])
    entry = {"container": container["id"], "source": source, "mode": mode, "mode_from": mode_from, "memory_bytes": container.get("memory_bytes"),
             "action": "stay", "destination": None, "strategy": None, "why": None, "predicted_downtime_ms": None,
             "prediction": None, "parallel": None, "reasons": []}
    if mode not in MODES:
        entry["reasons"] = [f"its mode {mode!r} ({mode_from}) is none of {', '.join(MODES)}"]
        return entry
    if mode != "live-migrate":
        entry["action"] = mode
        return entry
    if container.get("problems"):
        entry["reasons"] = list(container["problems"])
        return entry
    destination, reasons = _destination(container, source_info, destinations, free, request)
    if destination is None:
        entry["reasons"] = reasons
        return entry
    free[destination] -= needed_bytes(container, request["memory_margin_mib"])
    strategy, why = choose(request["strategy"], source_info["features"], destinations[destination]["features"], request["transport"])
    prediction = plan(strategy, why, [strategy], request["transport"], (request["learned_costs"] or {}).get(destination) or {},
                      container.get("memory_bytes"), request["budget_ms"])["predictions"][strategy]
    entry.update(action="live-migrate", destination=destination, strategy=strategy, why=why,
                 predicted_downtime_ms=prediction["total_ms"], prediction=describe(prediction["total_ms"], prediction["unpredicted"]),
                 # runc's CRIU reads page-stream TLS from one config file per host: such migrations go one at a time.
                 parallel=not streams_pages(request["transport"], [strategy]))
    return entry


def _destination(container: Mapping[str, Any], source_info: Mapping[str, Any], destinations: Mapping[str, Mapping[str, Any]],
                 free: Mapping[str, int | None], request: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The compatible destination with the most memory left (the first by name on a tie), or None and every reason."""
    candidates, reasons = [], []
    for host in sorted(destinations):
        refused = (refusals(container, host, destinations[host], request["strategy"], source_info["features"], request["transport"])
                   or memory_refusal(host, free[host], container, request["memory_margin_mib"]))
        reasons += refused
        if not refused:
            candidates.append(host)
    return max(candidates, key=lambda host: free[host], default=None), reasons


def _line(source: str, entry: Mapping[str, Any]) -> str:
    name = entry["container"]
    if entry["action"] == "live-migrate":
        alone = "" if entry["parallel"] else ", alone (its page stream's TLS)"
        return f"{name}: {source} -> {entry['destination']}, {entry['strategy']} ({entry['why']}), {entry['prediction']}{alone}"
    if entry["action"] == "stop":
        return f"{name}: stop on {source} ({entry['mode_from']})"
    if entry["action"] == "skip":
        return f"{name}: skipped, stays running on {source} ({entry['mode_from']})"
    return f"{name}: stays running on {source}: {'; '.join(entry['reasons'])}"


def returns(origin_record: Mapping[str, Any], strategy: str) -> dict[str, Any]:
    """The return after an evacuation: each container of the origin record from where it runs now back to its origin,
    as plan entries (with the requested strategy, which each migration resolves for its two hosts)."""
    entries = [{"container": moved["container"], "source": moved["destination"], "destination": moved["origin"],
                "mode": "live-migrate", "mode_from": "the origin record", "memory_bytes": None, "action": "live-migrate",
                "strategy": strategy, "why": "back to its origin", "predicted_downtime_ms": None, "prediction": None,
                "parallel": moved["parallel"], "reasons": []}
               for _name, moved in sorted(origin_record["containers"].items())]
    lines = [f"{entry['container']}: {entry['source']} -> {entry['destination']}, back to its origin ({strategy})" for entry in entries]
    return {"entries": entries, "lines": lines}


def summarize(entries: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]], stopped: Mapping[str, str],
              origin_record: Mapping[str, Any], returning: bool) -> dict[str, Any]:
    """Each container's outcome after the moves, the summary in words, the containers whose migration failed, and the
    origin record with what this run changed: an evacuation adds the containers it moved, a return drops those it
    brought back (or found back at their origin).

    results: by container, each migration's report (the migrate role's, None when it did not get that far), its error,
    whether the container already ran on the destination only, and when the migration started (epoch seconds)."""
    outcomes = [_outcome(entry, results.get(entry["container"]) or {}, stopped) for entry in entries]
    moved = {outcome["container"]: outcome for outcome in outcomes if outcome["outcome"] in ("migrated", "already there")}
    kept = {name: record for name, record in (origin_record.get("containers") or {}).items() if not (returning and name in moved)}
    if not returning:
        kept.update({name: {"container": name, "origin": outcome["source"], "destination": outcome["destination"],
                            "parallel": outcome["parallel"], "migration_id": outcome["migration_id"]}
                     for name, outcome in moved.items()})
    return {
        "entries": outcomes,
        "lines": [_outcome_line(outcome) for outcome in outcomes],
        "failed": [outcome["container"] for outcome in outcomes
                   if outcome["action"] == "live-migrate" and outcome["outcome"] not in ("migrated", "already there")],
        "origin_record": dict(origin_record, containers=kept),
    }


def _outcome(entry: Mapping[str, Any], result: Mapping[str, Any], stopped: Mapping[str, str]) -> dict[str, Any]:
    report = result.get("report") or {}
    outcome = {"container": entry["container"], "action": entry["action"], "source": entry["source"],
               "destination": entry["destination"], "strategy": report.get("strategy", entry["strategy"]),
               "parallel": entry["parallel"], "downtime_ms": report.get("downtime_ms"), "predicted_downtime_ms": entry["predicted_downtime_ms"],
               "migration_id": report.get("migration_id"), "reasons": list(entry["reasons"]), "error": None,
               "started": result.get("started"), "seconds": (report.get("seconds") or {}).get("total")}
    if entry["action"] == "live-migrate":
        if result.get("already_there"):
            outcome["outcome"] = "already there"
        elif report:
            outcome["outcome"] = report["outcome"]
            outcome["error"] = report.get("error") if report["outcome"] != "migrated" else None
            if report.get("recovery"):
                outcome["error"] = f"{outcome['error']}; {report['recovery']}"
        else:
            outcome["outcome"] = "failed"
            outcome["error"] = result.get("error") or "the migration did not report"
    elif entry["action"] == "stop":
        outcome["outcome"] = stopped.get(entry["container"], "not stopped")
    else:
        outcome["outcome"] = {"skip": "skipped", "stay": "stayed"}[entry["action"]]
    return outcome


def _outcome_line(outcome: Mapping[str, Any]) -> str:
    name, where = outcome["container"], outcome["source"]
    if outcome["action"] != "live-migrate":
        why = f": {'; '.join(outcome['reasons'])}" if outcome["reasons"] else ""
        return f"{name}: {outcome['outcome']} on {where}{why}"
    line = f"{name}: {where} -> {outcome['destination']}: {outcome['outcome']}"
    if outcome["outcome"] == "migrated":
        line += f", {outcome['strategy']}, downtime {outcome['downtime_ms']} ms"
    if outcome["error"]:
        line += f": {outcome['error']}"
    return line
