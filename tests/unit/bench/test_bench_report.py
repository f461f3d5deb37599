"""bench/report.py: medians, tables and targets from small fixed runs (no lab, no benchmark results)."""

from __future__ import annotations

import csv
import importlib.util
import json
import pathlib

REPORT_PY = pathlib.Path(__file__).resolve().parents[3] / "bench" / "report.py"


def load_report():
    spec = importlib.util.spec_from_file_location("ferry_bench_report", REPORT_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_report()

LABELS = {
    "seed": "seed flow", "stop-and-copy": "ferry stop-and-copy", "pre-copy": "ferry pre-copy", "post-copy": "ferry post-copy",
    "hybrid": "ferry hybrid", "auto": "ferry auto", "podman": "Podman",
}
META = {
    "profile": "test",
    "started_utc": "2026-01-01T00:00:00Z",
    "runs": 10,
    "rates": {"busy": 4, "idle": 0},
    "methods": {"seed": {}, "post-copy": {}, "podman": {}},
}


def run(index, size, rate, method, downtime=None, ok=True, **extra):
    """One record as bench/tasks/record.yml writes it, with only the fields the report reads."""
    record = {
        "index": index,
        "name": f"{index:03d}-{size}m-{rate}-{method}-r1",
        "rep": 1,
        "size_mib": size,
        "rate": rate,
        "dirty_mib_per_sec": META["rates"][rate],
        "method": method,
        "label": LABELS[method],
        "ok": ok,
        "error": "" if ok else "Migrate with it: boom",
        "downtime_workload_ms": downtime,
        "integrity_errors": 0,
        "corruption_lines": 0,
    }
    record.update(extra)
    return record


# Busy: seed at both sizes; post-copy twice at 64 MiB (one run below memstress's 0.5 s threshold) and once ok, once
# failed at 256 MiB; Podman failed at 64 MiB, absent at 256 MiB. Idle: seed at 64 MiB only.
RUNS = [
    run(1, 64, "busy", "seed", 4000, total_s=20),
    run(2, 256, "busy", "seed", 9000, total_s=50),
    run(3, 64, "busy", "post-copy", 1300, total_s=30, downtime_report_ms=1100),
    run(4, 64, "busy", "post-copy", None, total_s=34, downtime_report_ms="900"),
    run(5, 256, "busy", "post-copy", 2000, total_s=60),
    run(6, 256, "busy", "post-copy", 100, ok=False, total_s=1),
    run(7, 64, "busy", "podman", None, ok=False),
    run(8, 64, "idle", "seed", 3000, total_s=15, integrity_errors=-1, corruption_lines=2),
]


def rows_by_key(rows):
    return {(row["size_mib"], row["rate"], row["method"]): row for row in rows}


def test_downtime_counts_a_run_without_a_logged_pause_at_the_threshold():
    assert report.downtime_ms({"downtime_workload_ms": 1234}) == 1234.0
    assert report.downtime_ms({"downtime_workload_ms": None}) == 500.0
    assert report.downtime_ms({}) == 500.0


def test_number_reads_strings_and_leaves_out_missing_values():
    assert report.number(None) is None
    assert report.number("") is None
    assert report.number("2.5") == 2.5
    assert report.number(3) == 3.0


def test_median_of_skips_missing_values():
    runs = [{"x": 5}, {"x": None}, {"x": 1}, {"x": 4}]
    assert report.median_of(runs, lambda item: item["x"]) == 4
    assert report.median_of(runs[:3], lambda item: item["x"]) == 3.0
    assert report.median_of([{"x": None}], lambda item: item["x"]) is None


def test_summarize_takes_medians_of_the_successful_runs_only():
    rows = rows_by_key(report.summarize(RUNS))
    assert len(rows) == 6

    post_64 = rows[(64, "busy", "post-copy")]
    assert (post_64["runs"], post_64["ok"]) == (2, 2)
    assert post_64["downtime_ms_median"] == 900.0
    assert (post_64["downtime_ms_min"], post_64["downtime_ms_max"]) == (500.0, 1300.0)
    assert post_64["below_threshold_runs"] == 1
    assert post_64["downtime_report_ms_median"] == 1000.0
    assert post_64["total_s_median"] == 32.0
    assert post_64["pre_copy_rounds_median"] is None

    post_256 = rows[(256, "busy", "post-copy")]
    assert (post_256["runs"], post_256["ok"]) == (2, 1)
    assert post_256["downtime_ms_median"] == 2000.0
    assert post_256["total_s_median"] == 60.0

    podman = rows[(64, "busy", "podman")]
    assert (podman["runs"], podman["ok"]) == (1, 0)
    assert podman["downtime_ms_median"] is None

    # An unknown count (-1: no "stopped" line) is not subtracted; CORRUPTION lines add up.
    assert rows[(64, "idle", "seed")]["integrity_errors"] == 2


def test_summarize_takes_the_median_not_the_mean():
    rows = report.summarize([
        run(1, 64, "busy", "pre-copy", 1000, total_s=10, pre_copy_rounds=2),
        run(2, 64, "busy", "pre-copy", 4000, total_s=30, pre_copy_rounds=8),
        run(3, 64, "busy", "pre-copy", 1200, total_s=11, pre_copy_rounds=3),
    ])
    assert len(rows) == 1
    assert rows[0]["downtime_ms_median"] == 1200.0
    assert rows[0]["total_s_median"] == 11.0
    assert rows[0]["pre_copy_rounds_median"] == 3.0
    assert report.downtime_cell(rows[0]) == "1.2 [1.0-4.0]"


def test_downtime_table_busy():
    rows = report.summarize(RUNS)
    assert report.table(rows, "busy", report.downtime_cell) == [
        "| method | 64 MiB | 256 MiB |",
        "|---|---|---|",
        "| seed flow | 4.0 | 9.0 |",
        "| ferry post-copy | 0.9 [0.5-1.3] (report 1.0) (1 run(s) < 0.5) | 2.0 (1 of 2 failed) |",
        "| Podman | failed (1 runs) |  |",
    ]


def test_downtime_table_idle_leaves_out_methods_without_runs():
    rows = report.summarize(RUNS)
    assert report.table(rows, "idle", report.downtime_cell) == [
        "| method | 64 MiB | 256 MiB |",
        "|---|---|---|",
        "| seed flow | 3.0 |  |",
    ]


def test_total_time_table_busy():
    rows = report.summarize(RUNS)
    assert report.table(rows, "busy", report.total_cell) == [
        "| method | 64 MiB | 256 MiB |",
        "|---|---|---|",
        "| seed flow | 20.0 | 50.0 |",
        "| ferry post-copy | 32.0 | 60.0 |",
        "| Podman | failed |  |",
    ]


def test_paused_table_busy():
    runs = [run(1, 64, "busy", "seed", 4000, paused_total_ms=4000), run(2, 64, "busy", "post-copy", 1300, paused_total_ms=90500),
            run(3, 64, "busy", "podman", ok=False)]
    assert report.table(report.summarize(runs), "busy", report.paused_cell) == [
        "| method | 64 MiB |",
        "|---|---|",
        "| seed flow | 4.0 |",
        "| ferry post-copy | 90.5 |",
        "| Podman | failed |",
    ]


def test_wall_time_table_lists_every_run_and_their_sum():
    runs = [run(1, 64, "busy", "seed", 4000, run_s=230.5, migration_s=53.5), run(2, 64, "busy", "podman", ok=False)]
    assert report.wall_time_table(runs) == [
        "| run | method | run (s) | migration (s) |",
        "|---|---|---|---|",
        "| 001-64m-busy-seed-r1 | seed flow | 230.5 | 53.5 |",
        "| 002-64m-busy-podman-r1 | Podman | - | - |",
        "",
        "All 2 runs: 3.8 minutes.",
    ]


def test_methods_come_in_the_order_of_their_first_run():
    rows = report.summarize([run(1, 64, "busy", "pre-copy", 700), run(2, 64, "busy", "seed", 800), run(3, 256, "busy", "pre-copy", 900)])
    assert report.method_order(rows) == ["pre-copy", "seed"]


def test_targets_with_nothing_measured():
    assert report.targets_issue_8([]) == [
        "- 1 GiB busy, pre-copy or post-copy downtime <= 1/5 of the seed's flow: not measured in this run.",
        "- post-copy downtime at 1 GiB within 1.5x of 64 MiB: not measured in this run.",
        "- every strategy of ours ahead of Podman's downtime: not measured in this run.",
    ]


def test_targets_met_and_not_met():
    rows = report.summarize([
        run(1, 1024, "busy", "seed", 10000),
        run(2, 1024, "busy", "post-copy", 1500),
        run(3, 64, "busy", "post-copy", 1200),
        run(4, 1024, "busy", "pre-copy", 3000),
        run(5, 1024, "busy", "podman", 2500),
    ])
    assert report.targets_issue_8(rows) == [
        "- 1 GiB busy, pre-copy or post-copy downtime <= 1/5 of the seed's flow: **met**: best ferry post-copy "
        "1.5 s vs seed 10.0 s (ratio 0.15).",
        "- ferry post-copy, busy: downtime at 1 GiB within 1.5x of 64 MiB: **met**: 1.5 s vs 1.2 s (x1.25).",
        "- every strategy of ours ahead of Podman's downtime: **not met** in 1 of 2 cases: "
        "ferry pre-copy at 1024 MiB busy: 3.0 s vs Podman 2.5 s.",
    ]


def test_targets_not_met_when_post_copy_grows_with_size():
    rows = report.summarize([
        run(1, 1024, "busy", "seed", 4000),
        run(2, 1024, "busy", "post-copy", 2000),
        run(3, 64, "busy", "post-copy", 1000),
    ])
    assert report.targets_issue_8(rows)[:2] == [
        "- 1 GiB busy, pre-copy or post-copy downtime <= 1/5 of the seed's flow: **not met**: best ferry post-copy "
        "2.0 s vs seed 4.0 s (ratio 0.50).",
        "- ferry post-copy, busy: downtime at 1 GiB within 1.5x of 64 MiB: **not met**: 2.0 s vs 1.0 s (x2.00).",
    ]


def lab_run(index, size, method, downtime, **extra):
    return run(index, size, "busy", method, downtime, kind="seed" if method == "seed" else "ferry", **extra)


def test_issue_17_targets_met():
    runs = [
        lab_run(1, 64, "seed", 10000),
        lab_run(2, 64, "stop-and-copy", 10400, predicted_downtime_ms=9000, preflight_and_report_s=25),
        lab_run(3, 64, "post-copy", 3000, memory_local_s=40, predicted_downtime_ms=3500, preflight_and_report_s=29.5),
        lab_run(4, 64, "hybrid", 3200, memory_local_s=10, predicted_downtime_ms=3000, preflight_and_report_s=28),
        lab_run(5, 64, "auto", 3250, predicted_downtime_ms=3100, preflight_and_report_s=27),
        lab_run(6, 256, "seed", 40000),
        lab_run(7, 256, "post-copy", 3500, memory_local_s=160),
        lab_run(8, 256, "hybrid", 3600, memory_local_s=20),
    ]
    assert report.targets_issue_17(report.summarize(runs), runs) == [
        "- 64 MiB busy: ferry stop-and-copy's downtime <= 1.05x the seed's flow: **met**: 10.4 s vs 10.0 s (x1.04).",
        "- 256 MiB busy: the best ferry strategy's downtime <= 0.25x the seed's flow: **met**: ferry post-copy 3.5 s vs seed "
        "40.0 s (x0.09).",
        "- busy: ferry post-copy at 256 MiB <= 1.2x its own downtime at 64 MiB: **met**: 3.5 s vs 3.0 s (x1.17).",
        "- 64 MiB busy: hybrid's time until all memory is local <= 0.25x post-copy's: **met**: 10.0 s vs 40.0 s (x0.25).",
        "- 64 MiB busy: auto's downtime within 10 % of the best fixed strategy's: **met**: auto 3.2 s vs ferry post-copy "
        "3.0 s (x1.08).",
        "- 256 MiB busy: hybrid's time until all memory is local <= 0.25x post-copy's: **met**: 20.0 s vs 160.0 s (x0.12).",
        "- every run's predicted downtime within 25 % of its actual downtime: **met** in all 4 runs.",
        "- the report's preflight plus report at most 30 s in every run: **met**: 0 of 4 runs over; the longest 29.5 s "
        "(003-64m-busy-post-copy-r1).",
    ]


def test_issue_17_targets_not_met_say_by_how_much():
    runs = [
        lab_run(1, 64, "seed", 10000),
        lab_run(2, 64, "stop-and-copy", 16000, predicted_downtime_ms=4000, unpredicted_terms=["restore"],
                preflight_and_report_s=31),
        lab_run(3, 64, "auto", 17700),
    ]
    assert report.targets_issue_17(report.summarize(runs), runs) == [
        "- 64 MiB busy: ferry stop-and-copy's downtime <= 1.05x the seed's flow: **not met**: 16.0 s vs 10.0 s (x1.60).",
        "- 64 MiB busy: auto's downtime within 10 % of the best fixed strategy's: **not met**: auto 17.7 s vs ferry "
        "stop-and-copy 16.0 s (x1.11).",
        "- every run's predicted downtime within 25 % of its actual downtime: **not met** in 1 of 1 runs: "
        "002-64m-busy-stop-and-copy-r1 4.0 s predicted, 16.0 s actual (-75%; terms unpredicted: restore).",
        "- the report's preflight plus report at most 30 s in every run: **not met**: 1 of 1 runs over; the longest 31.0 s "
        "(002-64m-busy-stop-and-copy-r1).",
    ]
    assert report.targets_issue_17([], []) == ["- none measured in this run."]


def test_phase_table_sets_each_measured_term_beside_its_prediction():
    runs = [
        lab_run(1, 64, "seed", 10000),
        lab_run(2, 64, "hybrid", 8000, downtime_report_ms=7500, predicted_downtime_ms=7000, strategy="hybrid",
                strategy_reason="requested", downtime_largest_term="final_dump_fixed",
                downtime_terms_ms={"final_dump_fixed": 4000, "dirty_pages": 0, "hand_over": 500, "restore": 2800, "release": 200},
                predicted_downtime_terms_ms={"final_dump_fixed": 3900, "dirty_pages": 0.0, "hand_over": 400, "restore": 2500}),
    ]
    assert report.phase_table(runs)[2:] == [
        "| 002-64m-busy-hybrid-r1 | 8.0 | 7.5 | 7.0 | 4.0 / 3.9 | 0.0 / 0.0 | 0.5 / 0.4 | 2.8 / 2.5 | 0.2 / - "
        "| final_dump_fixed | hybrid (requested) |",
    ]


def test_a_failure_is_told_by_its_last_fatal_line():
    output = "TASK [Wait]\n^ column 3\n\nfatal: [src]: FAILED! => {\"msg\": \"runc exited with 1\"}\n\nPLAY RECAP\nsrc : failed=1"
    assert report.failure("Fail with the end of its output: " + output) == 'fatal: [src]: FAILED! => {"msg": "runc exited with 1"}'
    assert report.failure("Migrate with it:\n  boom") == "Migrate with it: boom"


def test_main_writes_the_report_files(tmp_path, capsys):
    # plot() needs matplotlib, pinned in tests/requirements-dev.txt (tests/requirements-core.txt for the core legs).
    results = tmp_path / "raw"
    results.mkdir()
    (results / "meta.json").write_text(json.dumps(META), encoding="utf-8")
    (results / "reports" / "costs").mkdir(parents=True)
    (results / "reports" / "costs" / "src--dst.json").write_text("{}\n", encoding="utf-8")
    (results / "runs.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in reversed(RUNS)) + "\n", encoding="utf-8"
    )
    out = tmp_path / "out"

    assert report.main([str(results), "--out", str(out)]) == 0

    lines = (out / "results.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "Profile test, started 2026-01-01T00:00:00Z: 8 of 10 runs done, 2 failed; "
        "memstress integrity errors in successful runs: 2."
    )
    assert "| ferry post-copy | 0.9 [0.5-1.3] (report 1.0) (1 run(s) < 0.5) | 2.0 (1 of 2 failed) |" in lines
    assert lines[-4:] == [
        "### Failed runs",
        "",
        "- 006-256m-busy-post-copy-r1: Migrate with it: boom",
        "- 007-64m-busy-podman-r1: Migrate with it: boom",
    ]
    assert capsys.readouterr().out.splitlines()[0] == lines[0]

    assert b"\r" not in (out / "runs.csv").read_bytes() + (out / "summary.csv").read_bytes()
    with open(out / "runs.csv", encoding="utf-8", newline="") as handle:
        runs_csv = list(csv.DictReader(handle))
    assert [row["index"] for row in runs_csv] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    with open(out / "summary.csv", encoding="utf-8", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert [(row["rate"], row["size_mib"], row["method"], row["downtime_ms_median"]) for row in summary] == [
        ("busy", "64", "podman", ""),
        ("busy", "64", "post-copy", "900.0"),
        ("busy", "64", "seed", "4000.0"),
        ("busy", "256", "post-copy", "2000.0"),
        ("busy", "256", "seed", "9000.0"),
        ("idle", "64", "seed", "3000.0"),
    ]
    assert json.loads((out / "meta.json").read_text(encoding="utf-8")) == META
    assert (out / "reports" / "costs" / "src--dst.json").read_text(encoding="utf-8") == "{}\n"
    assert (out / "downtime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
