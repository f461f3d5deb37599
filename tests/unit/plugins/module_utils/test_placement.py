"""An evacuation's placement (_placement.place): which destination takes each container, and why the others stay."""

from __future__ import annotations

import pytest

from ansible_collections.ferry.runc.plugins.filter import evacuate_plan as plan_filter
from ansible_collections.ferry.runc.plugins.module_utils._placement import MIB, place, returns, summarize

ALL = {"mem_dirty_track": True, "uffd": True, "uffd_noncoop": True}
REQUEST = {"ids": [], "pattern": "", "annotation": "", "mode": "live-migrate", "modes": {}, "memory_margin_mib": 64,
           "strategy": "auto", "transport": "nfs", "budget_ms": 1000, "learned_costs": {}}


def container(name, memory_mib=100, **fields):
    return dict({"id": name, "status": "running", "pid": 100, "problems": [], "memory_bytes": memory_mib * MIB,
                 "bind_sources": [], "annotations": {}}, **fields)


def source(*containers):
    return {"features": ALL, "containers": list(containers)}


def destination(available_mib=1000, containers=(), cpu=True, missing_paths=(), features=None):
    return {"criu_check": {"passed": True, "output": "Looks good."}, "features": features or ALL,
            "cpu_check": {"passed": cpu, "output": "" if cpu else "Error (criu/cpu.c:304): cpu: CPU has no avx2"},
            "containers": [{"id": name, "status": "running"} for name in containers],
            "memory_available_bytes": available_mib * MIB, "missing_paths": list(missing_paths)}


def placed(source_info, destinations, **request):
    return {entry["container"]: entry for entry in place("src", source_info, destinations, dict(REQUEST, **request))["entries"]}


def test_each_container_goes_where_most_memory_is_left_after_the_earlier_picks():
    entries = placed(source(container("a", 300), container("b", 200), container("c", 100)),
                     {"dst1": destination(1000), "dst2": destination(700)})
    # a (largest) to dst1 (1000 -> 636 left), b to dst2 (700 -> 436), c to dst1 (636 > 436).
    assert {name: entry["destination"] for name, entry in entries.items()} == {"a": "dst1", "b": "dst2", "c": "dst1"}
    assert all(entry["action"] == "live-migrate" and entry["strategy"] == "pre-copy" and entry["parallel"] for entry in entries.values())


def test_a_container_that_earlier_picks_left_no_room_for_stays_with_the_reason():
    entries = placed(source(container("big", 500), container("small", 400)), {"dst": destination(1000)})
    assert entries["big"]["destination"] == "dst"
    assert entries["small"]["action"] == "stay" and entries["small"]["destination"] is None
    assert entries["small"]["reasons"] == [
        "dst has 436 MiB available after the containers placed before this one, and this one needs 464 MiB"
        " (its memory and the margin of 64 MiB)"]


def test_a_destination_whose_cpu_lacks_a_feature_takes_nothing():
    entries = placed(source(container("a")), {"old": destination(5000, cpu=False), "new": destination(500)})
    assert entries["a"]["destination"] == "new"
    entries = placed(source(container("a")), {"old": destination(5000, cpu=False)})
    assert entries["a"]["action"] == "stay"
    assert entries["a"]["reasons"] == [
        "the CPU of old lacks features of the source's (criu cpuinfo check: Error (criu/cpu.c:304): cpu: CPU has no avx2)"]


def test_a_destination_where_the_id_is_taken_or_a_bind_source_missing_does_not_take_it():
    entries = placed(source(container("web", bind_sources=["/srv/web", "/etc/web"]), container("db")),
                     {"dst1": destination(5000, containers=["db"]), "dst2": destination(5000, missing_paths=["/srv/web"])})
    assert entries["web"]["destination"] == "dst1" and entries["db"]["destination"] == "dst2"
    destinations = {"dst1": destination(containers=["web"]), "dst2": destination(missing_paths=["/srv/web"])}
    entries = placed(source(container("web", bind_sources=["/srv/web"])), destinations)
    assert entries["web"]["reasons"] == ["a container web exists on dst1 already", "dst2 lacks the bind-mount sources /srv/web"]


def test_an_unreadable_or_broken_destination_takes_nothing_and_says_why():
    broken = dict(destination(), criu_check={"passed": False, "output": "Error: vdso"})
    entries = placed(source(container("a")), {"down": {"unreachable": True, "msg": "ssh: connect timed out"}, "broken": broken})
    assert entries["a"]["reasons"] == ["CRIU does not work on broken (criu check: Error: vdso)",
                                       "down could not be read: ssh: connect timed out"]


def test_a_strategy_a_destination_lacks_rules_it_out_and_post_copy_runs_alone():
    no_uffd = dict(ALL, uffd=False, uffd_noncoop=False)
    entries = placed(source(container("a")), {"dst1": destination(5000, features=no_uffd), "dst2": destination(500)},
                     strategy="post-copy")
    assert entries["a"]["destination"] == "dst2" and entries["a"]["strategy"] == "post-copy"
    assert entries["a"]["parallel"] is False
    assert entries["a"]["predicted_downtime_ms"] is None and entries["a"]["prediction"].startswith("no prediction")


def test_one_that_cannot_move_stays_and_the_modes_come_from_the_variable_then_the_annotation():
    entries = placed(source(container("tty", problems=["its stdin is a terminal (/dev/pts/0), which does not move with it"]),
                            container("cache", annotations={"ferry.runc.evacuate": "skip"}),
                            container("batch", annotations={"ferry.runc.evacuate": "skip"}),
                            container("odd", annotations={"ferry.runc.evacuate": "later"})),
                     {"dst": destination(5000)}, modes={"batch": "stop"})
    assert entries["tty"]["action"] == "stay" and entries["tty"]["reasons"][0].startswith("its stdin is a terminal")
    assert (entries["cache"]["action"], entries["cache"]["mode_from"]) == ("skip", "annotation ferry.runc.evacuate")
    assert (entries["batch"]["action"], entries["batch"]["mode_from"]) == ("stop", "evacuate_modes")
    assert entries["odd"]["action"] == "stay"
    assert entries["odd"]["reasons"] == ["its mode 'later' (annotation ferry.runc.evacuate) is none of live-migrate, stop, skip"]


@pytest.mark.parametrize(
    "selection, expected",
    [({}, ["api", "web-1", "web-2"]),
     ({"ids": ["api"]}, ["api"]),
     ({"pattern": "web-*"}, ["web-1", "web-2"]),
     ({"annotation": "tier=front"}, ["web-1"]),
     ({"annotation": "tier"}, ["web-1", "web-2"]),
     ({"ids": ["api"], "pattern": "web-2"}, ["api", "web-2"])],
)
def test_the_selection_names_containers_by_id_pattern_or_annotation(selection, expected):
    containers = [container("web-1", annotations={"tier": "front"}), container("web-2", annotations={"tier": "back"}),
                  container("api"), container("old", status="stopped")]
    assert sorted(placed(source(*containers), {"dst": destination(5000)}, **selection)) == expected


def test_the_plan_in_words_says_where_each_goes_and_why_the_others_stay():
    plan = plan_filter.evacuate_plan(source(container("a", 300), container("s", annotations={"ferry.runc.evacuate": "skip"}),
                                            container("t", problems=["its stdout is a pipe to a process on this host"])),
                                     "src", {"dst": destination(1000)}, REQUEST)
    assert plan["lines"] == [
        "a: src -> dst, pre-copy (the source tracks dirty memory (soft-dirty), so memory can be copied while the container runs),"
        " no prediction: no earlier migration between these hosts",
        "s: skipped, stays running on src (annotation ferry.runc.evacuate)",
        "t: stays running on src: its stdout is a pipe to a process on this host",
    ]
    assert plan_filter.FilterModule().filters() == {"evacuate_plan": plan_filter.evacuate_plan}


def test_the_summary_records_the_origin_of_what_moved_and_the_return_takes_exactly_those_back():
    plan = place("src", source(container("a", 300), container("b", 200), container("t", problems=["its stdout is a pipe"]),
                               container("s", annotations={"ferry.runc.evacuate": "skip"}), container("x", annotations={"ferry.runc.evacuate": "stop"})),
                 {"dst": destination(5000)}, REQUEST)
    results = {"a": {"report": {"outcome": "migrated", "strategy": "pre-copy", "downtime_ms": 812, "migration_id": "a-1"}},
               "b": {"report": {"outcome": "rolled back", "strategy": "pre-copy", "downtime_ms": None, "migration_id": "b-1",
                                "error": "the restore failed on dst", "recovery": "the container runs on src again"}}}
    summary = summarize(plan["entries"], results, {"x": "stopped"}, {"source": "src", "containers": {}}, returning=False)
    outcomes = {entry["container"]: entry["outcome"] for entry in summary["entries"]}
    assert outcomes == {"a": "migrated", "b": "rolled back", "t": "stayed", "s": "skipped", "x": "stopped"}
    assert summary["failed"] == ["b"]
    assert summary["lines"] == [
        "a: src -> dst: migrated, pre-copy, downtime 812 ms",
        "b: src -> dst: rolled back: the restore failed on dst; the container runs on src again",
        "s: skipped on src",
        "t: stayed on src: its stdout is a pipe",
        "x: stopped on src",
    ]
    record = summary["origin_record"]
    assert record == {"source": "src", "containers": {"a": {"container": "a", "origin": "src", "destination": "dst",
                                                            "parallel": True, "migration_id": "a-1"}}}

    back = returns(record, "auto")
    assert [(entry["container"], entry["source"], entry["destination"], entry["strategy"]) for entry in back["entries"]] == [
        ("a", "dst", "src", "auto")]
    assert back["lines"] == ["a: dst -> src, back to its origin (auto)"]
    returned = summarize(back["entries"], {"a": {"report": {"outcome": "migrated", "strategy": "pre-copy", "downtime_ms": 700,
                                                            "migration_id": "a-2"}}}, {}, record, returning=True)
    assert returned["origin_record"] == {"source": "src", "containers": {}} and returned["failed"] == []


def test_a_migration_without_a_report_failed_and_one_found_moved_already_counts_as_moved():
    plan = place("src", source(container("a"), container("b")), {"dst": destination(5000)}, REQUEST)
    summary = summarize(plan["entries"], {"a": {"error": "Container a is paused on the source src"}, "b": {"already_there": True}},
                        {}, {}, returning=False)
    assert [(entry["container"], entry["outcome"], entry["error"]) for entry in summary["entries"]] == [
        ("a", "failed", "Container a is paused on the source src"), ("b", "already there", None)]
    assert summary["failed"] == ["a"] and sorted(summary["origin_record"]["containers"]) == ["b"]
