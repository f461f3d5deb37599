# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the raw results of bench/bench.yml into tables, medians, the targets of issues 17 and 8 and a plot.

    python3 report.py RESULTS_DIR [--out DIR]

RESULTS_DIR holds runs.jsonl (one record per run) and meta.json, as bench/bench.yml writes them. DIR (default
RESULTS_DIR) receives runs.csv and runs.json (every run, raw), summary.csv (medians per size, rate and method),
results.md (the tables and the targets, markdown), downtime.png (the plot) and copies of meta.json and of ferry's
reports (reports/, with the learned costs). The same tables are printed. Standard library and matplotlib only.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
from pathlib import Path

# Below this gap memstress logs no pause (it logs gaps of more than 0.5 s), so a run without one stopped for less.
PAUSE_THRESHOLD_MS = 500
OURS_LOW_DOWNTIME = ("pre-copy", "post-copy", "pre-copy-page-server", "post-copy-page-server")
# The downtime model's terms, in the order of the frozen window (the migrate report's downtime_terms_ms).
DOWNTIME_TERMS = ("final_dump_fixed", "dirty_pages", "hand_over", "restore", "release")
# Issue 17's bounds.
STOP_AND_COPY_OVER_SEED = 1.05
BEST_OVER_SEED_LARGEST = 0.25
BEST_LARGEST_OVER_SMALLEST = 1.2
HYBRID_LOCAL_OVER_POST_COPY = 0.25
AUTO_OVER_BEST_FIXED = 1.10
PREDICTION_ERROR = 0.25
PREFLIGHT_AND_REPORT_S = 30
CSV_FIELDS = (
    "index", "name", "rep", "size_mib", "rate", "dirty_mib_per_sec", "method", "kind", "ok", "downtime_workload_ms",
    "downtime_report_ms", "predicted_downtime_ms", "downtime_largest_term", "downtime_budget_met", "frozen_ms_criu",
    "restore_s", "paused_total_ms", "pauses_ms", "memory_local_s", "total_s", "command_s", "migration_s", "run_s",
    "preflight_and_report_s", "strategy", "strategy_reason", "transport", "pre_copy_rounds", "pre_copy_stop_reason",
    "pre_copy_s", "post_copy_transfer_s", "lazy_pages_fetched", "pages_restored_from_parents", "bytes_total",
    "integrity_errors", "corruption_lines", "passes", "clock_offset_set_ms", "clock_bound_ms", "clock_offset_after_ms",
    "other_pauses_ms", "started_utc", "error",
)


def load_runs(results: Path) -> list[dict]:
    with open(results / "runs.jsonl", encoding="utf-8") as handle:
        runs = [json.loads(line) for line in handle if line.strip()]
    for run in runs:
        run["clock_offset_set_ms"] = run.get("clock_set", {}).get("offset_ms")
        run["clock_bound_ms"] = run.get("clock_set", {}).get("bound_ms")
        run["clock_offset_after_ms"] = run.get("clock_after", {}).get("offset_ms")
    return sorted(runs, key=lambda run: run["index"])


def downtime_ms(run: dict) -> float:
    """The workload's longest logged gap; a run without one stopped for less than the threshold."""
    value = run.get("downtime_workload_ms")
    return float(PAUSE_THRESHOLD_MS if value is None else value)


def number(value) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def median_of(runs: list[dict], key) -> float | None:
    values = [value for value in (key(run) for run in runs) if value is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["size_mib"], run["rate"], run["method"]), []).append(run)
    rows = []
    for (size, rate, method), group in groups.items():
        ok = [run for run in group if run["ok"]]
        downtimes = [downtime_ms(run) for run in ok]
        rows.append({
            "size_mib": size,
            "rate": rate,
            "dirty_mib_per_sec": group[0]["dirty_mib_per_sec"],
            "method": method,
            "label": group[0]["label"],
            "runs": len(group),
            "ok": len(ok),
            "downtime_ms_median": statistics.median(downtimes) if downtimes else None,
            "downtime_ms_min": min(downtimes) if downtimes else None,
            "downtime_ms_max": max(downtimes) if downtimes else None,
            "below_threshold_runs": sum(1 for run in ok if run.get("downtime_workload_ms") is None),
            "downtime_report_ms_median": median_of(ok, lambda run: number(run.get("downtime_report_ms"))),
            "paused_total_ms_median": median_of(ok, lambda run: number(run.get("paused_total_ms"))),
            "total_s_median": median_of(ok, lambda run: number(run.get("total_s"))),
            "command_s_median": median_of(ok, lambda run: number(run.get("command_s"))),
            "pre_copy_rounds_median": median_of(ok, lambda run: number(run.get("pre_copy_rounds"))),
            "post_copy_transfer_s_median": median_of(ok, lambda run: number(run.get("post_copy_transfer_s"))),
            "predicted_downtime_ms_median": median_of(ok, lambda run: number(run.get("predicted_downtime_ms"))),
            "memory_local_s_median": median_of(ok, lambda run: number(run.get("memory_local_s"))),
            "preflight_and_report_s_median": median_of(ok, lambda run: number(run.get("preflight_and_report_s"))),
            "integrity_errors": sum(max(0, int(run.get("integrity_errors", 0))) + int(run.get("corruption_lines", 0)) for run in ok),
        })
    return rows


def seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def method_order(rows: list[dict]) -> list[str]:
    """The methods in the order of their first run, which is the profile's order (bench.yml runs them so)."""
    return list(dict.fromkeys(row["method"] for row in rows))


def table(rows: list[dict], rate: str, cell) -> list[str]:
    sizes = sorted({row["size_mib"] for row in rows})
    header = ["method"] + [f"{size} MiB" for size in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    index = {(row["size_mib"], row["method"]): row for row in rows if row["rate"] == rate}
    for method in method_order(rows):
        cells = [cell(index.get((size, method))) for size in sizes]
        if any(value != "" for value in cells):
            label = next(row["label"] for row in rows if row["method"] == method)
            lines.append("| " + " | ".join([label] + cells) + " |")
    return lines


def downtime_cell(row: dict | None) -> str:
    if row is None:
        return ""
    if row["ok"] == 0:
        return f"failed ({row['runs']} runs)"
    text = seconds(row["downtime_ms_median"])
    if row["ok"] > 1:
        text += f" [{seconds(row['downtime_ms_min'])}-{seconds(row['downtime_ms_max'])}]"
    if row["downtime_report_ms_median"] is not None:
        text += f" (report {seconds(row['downtime_report_ms_median'])})"
    if row["below_threshold_runs"]:
        text += f" ({row['below_threshold_runs']} run(s) < 0.5)"
    if row["ok"] < row["runs"]:
        text += f" ({row['runs'] - row['ok']} of {row['runs']} failed)"
    return text


def total_cell(row: dict | None) -> str:
    if row is None:
        return ""
    if row["ok"] == 0:
        return "failed"
    return "-" if row["total_s_median"] is None else f"{row['total_s_median']:.1f}"


def paused_cell(row: dict | None) -> str:
    if row is None:
        return ""
    if row["ok"] == 0:
        return "failed"
    return seconds(row["paused_total_ms_median"])


def wall_time_table(runs: list[dict]) -> list[str]:
    """Each run's wall time on the controller: the whole run (start, warm-up, migration, verification, clean-up)
    and the migration alone, what a full profile's duration is estimated from."""
    lines = ["| run | method | run (s) | migration (s) |", "|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run['name']} | {run['label']} | {run.get('run_s', '-')} | {run.get('migration_s', '-')} |")
    total = sum(float(run.get("run_s") or 0) for run in runs)
    return lines + ["", f"All {len(runs)} runs: {total / 60:.1f} minutes."]


def ratio_line(target: str, verdict_ok: bool, detail: str) -> str:
    return f"- {target}: **{'met' if verdict_ok else 'not met'}**: {detail}."


def ferry_methods(rows: list[dict]) -> list[str]:
    return [method for method in method_order(rows) if method_is_ours(rows, method)]


def targets_issue_17(rows: list[dict], runs: list[dict]) -> list[str]:
    """Issue 17's targets (make bench-lab): each met, not met (with the numbers) or not measured."""
    index = {(row["size_mib"], row["rate"], row["method"]): row for row in rows if row["ok"]}
    sizes = sorted({row["size_mib"] for row in rows})
    rates = list(dict.fromkeys(row["rate"] for row in rows))
    ours = ferry_methods(rows)
    lines = []
    for rate in rates:
        for size in sizes:
            lines += stop_and_copy_against_seed(index, size, rate)
        lines += best_at_largest(index, ours, sizes, rate)
        for size in sizes:
            lines += hybrid_against_post_copy(index, size, rate)
            lines += auto_against_best_fixed(index, ours, size, rate)
    lines += predictions_against_actual(runs)
    lines += preflight_and_report(runs)
    return lines or ["- none measured in this run."]


def stop_and_copy_against_seed(index: dict, size: int, rate: str) -> list[str]:
    seed, ours = index.get((size, rate, "seed")), index.get((size, rate, "stop-and-copy"))
    if not (seed and ours):
        return []
    ratio = ours["downtime_ms_median"] / seed["downtime_ms_median"]
    return [ratio_line(
        f"{size} MiB {rate}: ferry stop-and-copy's downtime <= {STOP_AND_COPY_OVER_SEED}x the seed's flow",
        ratio <= STOP_AND_COPY_OVER_SEED,
        f"{seconds(ours['downtime_ms_median'])} s vs {seconds(seed['downtime_ms_median'])} s (x{ratio:.2f})",
    )]


def best_at_largest(index: dict, methods: list[str], sizes: list[int], rate: str) -> list[str]:
    largest = sizes[-1] if sizes else None
    seed = index.get((largest, rate, "seed"))
    measured = [index[(largest, rate, method)] for method in methods if (largest, rate, method) in index]
    if len(sizes) < 2 or not (seed and measured):
        return []
    best = min(measured, key=lambda row: row["downtime_ms_median"])
    ratio = best["downtime_ms_median"] / seed["downtime_ms_median"]
    lines = [ratio_line(
        f"{largest} MiB {rate}: the best ferry strategy's downtime <= {BEST_OVER_SEED_LARGEST}x the seed's flow",
        ratio <= BEST_OVER_SEED_LARGEST,
        f"{best['label']} {seconds(best['downtime_ms_median'])} s vs seed {seconds(seed['downtime_ms_median'])} s (x{ratio:.2f})",
    )]
    smallest = index.get((sizes[0], rate, best["method"]))
    if smallest:
        growth = best["downtime_ms_median"] / smallest["downtime_ms_median"]
        lines.append(ratio_line(
            f"{rate}: {best['label']} at {largest} MiB <= {BEST_LARGEST_OVER_SMALLEST}x its own downtime at {sizes[0]} MiB",
            growth <= BEST_LARGEST_OVER_SMALLEST,
            f"{seconds(best['downtime_ms_median'])} s vs {seconds(smallest['downtime_ms_median'])} s (x{growth:.2f})",
        ))
    return lines


def hybrid_against_post_copy(index: dict, size: int, rate: str) -> list[str]:
    hybrid, post_copy = index.get((size, rate, "hybrid")), index.get((size, rate, "post-copy"))
    if not (hybrid and post_copy) or None in (hybrid["memory_local_s_median"], post_copy["memory_local_s_median"]):
        return []
    hybrid_s, post_copy_s = hybrid["memory_local_s_median"], post_copy["memory_local_s_median"]
    return [ratio_line(
        f"{size} MiB {rate}: hybrid's time until all memory is local <= {HYBRID_LOCAL_OVER_POST_COPY}x post-copy's",
        hybrid_s <= HYBRID_LOCAL_OVER_POST_COPY * post_copy_s,
        f"{hybrid_s:.1f} s vs {post_copy_s:.1f} s" + (f" (x{hybrid_s / post_copy_s:.2f})" if post_copy_s else ""),
    )]


def auto_against_best_fixed(index: dict, methods: list[str], size: int, rate: str) -> list[str]:
    auto = index.get((size, rate, "auto"))
    fixed = [index[(size, rate, method)] for method in methods if method != "auto" and (size, rate, method) in index]
    if not (auto and fixed):
        return []
    best = min(fixed, key=lambda row: row["downtime_ms_median"])
    ratio = auto["downtime_ms_median"] / best["downtime_ms_median"]
    return [ratio_line(
        f"{size} MiB {rate}: auto's downtime within {round((AUTO_OVER_BEST_FIXED - 1) * 100)} % of the best fixed strategy's",
        ratio <= AUTO_OVER_BEST_FIXED,
        f"auto {seconds(auto['downtime_ms_median'])} s vs {best['label']} {seconds(best['downtime_ms_median'])} s (x{ratio:.2f})",
    )]


def predictions_against_actual(runs: list[dict]) -> list[str]:
    """Each ferry run's predicted downtime against the longest gap the workload logged."""
    predicted = [run for run in runs if run["ok"] and number(run.get("predicted_downtime_ms")) is not None]
    if not predicted:
        return []
    off = []
    for run in predicted:
        error = number(run["predicted_downtime_ms"]) / downtime_ms(run) - 1
        if abs(error) > PREDICTION_ERROR:
            unpredicted = ", ".join(run.get("unpredicted_terms") or []) or "none"
            off.append(f"{run['name']} {seconds(number(run['predicted_downtime_ms']))} s predicted, {seconds(downtime_ms(run))} s "
                       f"actual ({error:+.0%}; terms unpredicted: {unpredicted})")
    target = f"every run's predicted downtime within {round(PREDICTION_ERROR * 100)} % of its actual downtime"
    if off:
        return [f"- {target}: **not met** in {len(off)} of {len(predicted)} runs: " + "; ".join(off) + "."]
    return [f"- {target}: **met** in all {len(predicted)} runs."]


def preflight_and_report(runs: list[dict]) -> list[str]:
    timed = [run for run in runs if run["ok"] and number(run.get("preflight_and_report_s")) is not None]
    if not timed:
        return []
    slowest = max(timed, key=lambda run: number(run["preflight_and_report_s"]))
    over = [run for run in timed if number(run["preflight_and_report_s"]) > PREFLIGHT_AND_REPORT_S]
    return [ratio_line(
        f"the report's preflight plus report at most {PREFLIGHT_AND_REPORT_S} s in every run",
        not over,
        f"{len(over)} of {len(timed)} runs over; the longest {number(slowest['preflight_and_report_s']):.1f} s ({slowest['name']})",
    )]


def phase_table(runs: list[dict]) -> list[str]:
    """Each ferry run's frozen window: the model's terms as the report measured them, against their prediction."""
    header = ["run", "downtime (workload)", "report", "predicted"] + list(DOWNTIME_TERMS) + ["largest term", "strategy (why)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        if not run["ok"] or run.get("kind") != "ferry":
            continue
        actual, predicted = run.get("downtime_terms_ms") or {}, run.get("predicted_downtime_terms_ms") or {}
        terms = [f"{seconds(number(actual.get(term)))} / {seconds(number(predicted.get(term)))}" for term in DOWNTIME_TERMS]
        lines.append("| " + " | ".join(
            [run["name"], seconds(downtime_ms(run)), seconds(number(run.get("downtime_report_ms"))),
             seconds(number(run.get("predicted_downtime_ms")))] + terms
            + [run.get("downtime_largest_term") or "-", f"{run.get('strategy')} ({run.get('strategy_reason')})"]
        ) + " |")
    return lines


def targets_issue_8(rows: list[dict]) -> list[str]:
    """Issue 8's three targets, each met, not met (with the numbers) or not measured."""
    index = {(row["size_mib"], row["rate"], row["method"]): row for row in rows if row["ok"]}
    lines = []

    seed = index.get((1024, "busy", "seed"))
    ours = [(method, index[(1024, "busy", method)]) for method in OURS_LOW_DOWNTIME if (1024, "busy", method) in index]
    if seed and ours:
        best_method, best = min(ours, key=lambda item: item[1]["downtime_ms_median"])
        ratio = best["downtime_ms_median"] / seed["downtime_ms_median"]
        verdict = "met" if ratio <= 0.2 else "not met"
        lines.append(
            f"- 1 GiB busy, pre-copy or post-copy downtime <= 1/5 of the seed's flow: **{verdict}**: best {best['label']} "
            f"{seconds(best['downtime_ms_median'])} s vs seed {seconds(seed['downtime_ms_median'])} s (ratio {ratio:.2f})."
        )
    else:
        lines.append("- 1 GiB busy, pre-copy or post-copy downtime <= 1/5 of the seed's flow: not measured in this run.")

    for method in ("post-copy", "post-copy-page-server"):
        for rate in sorted({row["rate"] for row in rows}):
            small, large = index.get((64, rate, method)), index.get((1024, rate, method))
            if not (small and large):
                continue
            ratio = large["downtime_ms_median"] / small["downtime_ms_median"]
            verdict = "met" if ratio <= 1.5 else "not met"
            lines.append(
                f"- {large['label']}, {rate}: downtime at 1 GiB within 1.5x of 64 MiB: **{verdict}**: "
                f"{seconds(large['downtime_ms_median'])} s vs {seconds(small['downtime_ms_median'])} s (x{ratio:.2f})."
            )
    if not any("within 1.5x" in line for line in lines):
        lines.append("- post-copy downtime at 1 GiB within 1.5x of 64 MiB: not measured in this run.")

    compared, behind = 0, []
    for (size, rate, method), row in sorted(index.items()):
        podman = index.get((size, rate, "podman"))
        if row.get("method") in ("seed", "podman") or not method or podman is None:
            continue
        if not method_is_ours(rows, method):
            continue
        compared += 1
        if row["downtime_ms_median"] >= podman["downtime_ms_median"]:
            behind.append(
                f"{row['label']} at {size} MiB {rate}: {seconds(row['downtime_ms_median'])} s vs Podman "
                f"{seconds(podman['downtime_ms_median'])} s"
            )
    if compared == 0:
        lines.append("- every strategy of ours ahead of Podman's downtime: not measured in this run.")
    elif behind:
        lines.append(f"- every strategy of ours ahead of Podman's downtime: **not met** in {len(behind)} of {compared} cases: " + "; ".join(behind) + ".")
    else:
        lines.append(f"- every strategy of ours ahead of Podman's downtime: **met** in all {compared} cases measured.")
    return lines


def method_is_ours(rows: list[dict], method: str) -> bool:
    return any(row["method"] == method and row["label"].startswith("ferry") for row in rows)


def plot(rows: list[dict], meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [rate for rate in meta.get("rates", {}) if any(row["rate"] == rate for row in rows)]
    figure, axes = plt.subplots(2, len(rates), figsize=(6.5 * len(rates), 9), squeeze=False)
    for column, rate in enumerate(rates):
        for method in method_order(rows):
            points = sorted(
                (row for row in rows if row["rate"] == rate and row["method"] == method and row["ok"]),
                key=lambda row: row["size_mib"],
            )
            if not points:
                continue
            sizes = [row["size_mib"] for row in points]
            label = points[0]["label"]
            style = "--" if method in ("seed", "podman") else "-"
            axes[0][column].plot(sizes, [row["downtime_ms_median"] / 1000 for row in points], style, marker="o", label=label)
            axes[1][column].plot(sizes, [row["total_s_median"] for row in points], style, marker="o", label=label)
        dirty = meta.get("rates", {}).get(rate)
        for row_index, ylabel in enumerate(("downtime: longest gap the workload logged (s)", "total time (s)")):
            axis = axes[row_index][column]
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xticks(sorted({row["size_mib"] for row in rows}))
            axis.set_xticklabels([f"{size} MiB" for size in sorted({row["size_mib"] for row in rows})])
            axis.set_ylabel(ylabel)
            axis.set_title(f"{rate} ({dirty} MiB/s dirtied), medians")
            axis.grid(True, which="both", alpha=0.3)
    machine = meta.get("machine", {})
    figure.suptitle(
        f"memstress migrated between two QEMU VMs\n({machine.get('vm_accel', '?')}, {machine.get('vm_memory_mb', '?')} MiB, "
        f"{machine.get('vm_smp', '?')} vCPU) on {machine.get('cpu_model', '?')}",
        fontsize="medium",
    )
    # One legend under all plots: inside an axis it hides the points of a single size.
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize="small")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def failure(error: str) -> str:
    """A failed run's cause on one line: Ansible's last fatal line where the output has one."""
    fatal = [line for line in error.splitlines() if line.startswith("fatal:")]
    return " ".join((fatal[-1] if fatal else error).split())[:400]


def write_csv(path: Path, rows: list[dict], fields) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        # Not csv's default "\r\n": the results are committed, and ansible-test sanity allows "\n" only.
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in row.items()})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or args.results
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((args.results / "meta.json").read_text(encoding="utf-8"))
    runs = load_runs(args.results)
    rows = summarize(runs)

    write_csv(out / "runs.csv", runs, CSV_FIELDS)
    (out / "runs.json").write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    summary_fields = list(rows[0]) if rows else []
    write_csv(out / "summary.csv", sorted(rows, key=lambda row: (row["rate"], row["size_mib"], row["method"])), summary_fields)
    if (args.results / "meta.json").resolve() != (out / "meta.json").resolve():
        shutil.copyfile(args.results / "meta.json", out / "meta.json")
        if (args.results / "reports").is_dir():
            shutil.copytree(args.results / "reports", out / "reports", dirs_exist_ok=True)

    failed = [run for run in runs if not run["ok"]]
    lines = [
        f"Profile {meta.get('profile')}, started {meta.get('started_utc')}: {len(runs)} of {meta.get('runs')} runs done, "
        f"{len(failed)} failed; memstress integrity errors in successful runs: "
        f"{sum(row['integrity_errors'] for row in rows)}.",
        "",
    ]
    for rate in [rate for rate in meta.get("rates", {}) if any(row["rate"] == rate for row in rows)]:
        dirty = meta["rates"][rate]
        lines += [
            f"### Downtime, {rate} ({dirty} MiB/s dirtied): seconds, median [min-max] of the longest gap memstress logged "
            "(our report's downtime_ms in parentheses)",
            "",
        ]
        lines += table(rows, rate, downtime_cell) + [""]
        lines += [f"### Total time, {rate} ({dirty} MiB/s dirtied): seconds, median", ""]
        lines += table(rows, rate, total_cell) + [""]
        lines += [
            f"### Paused in total, {rate} ({dirty} MiB/s dirtied): seconds, median of the sum of the gaps memstress "
            "logged (post-copy's page faults each stall it briefly)",
            "",
        ]
        lines += table(rows, rate, paused_cell) + [""]
    lines += ["### Targets of issue 17", ""] + targets_issue_17(rows, runs) + [""]
    lines += [
        "### The frozen window of each ferry run: seconds, as measured / as predicted",
        "",
    ] + phase_table(runs) + [""]
    lines += ["### Targets of issue 8", ""] + targets_issue_8(rows) + [""]
    lines += ["### Wall time of each run", ""] + wall_time_table(runs) + [""]
    if failed:
        lines += ["### Failed runs", ""] + [f"- {run['name']}: {failure(run['error'])}" for run in failed] + [""]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    if rows:
        plot(rows, meta, out / "downtime.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
