"""The evacuate role's controller-side tasks, run by ansible-playbook on localhost under the ansible-core that runs the
unit tests (the core legs run this file too): the summary and origin record after the moves, and a return's plan in
check mode, which reads no host."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from ansible_collections.ferry.runc.plugins.module_utils._placement import place

ROOT = pathlib.Path(__file__).resolve().parents[3]
SUMMARY_PLAYBOOK = pathlib.Path(__file__).with_name("files") / "evacuate-summary.yml"
INVENTORY = """\
[migration_source]
host-a migrate_address=192.0.2.10 ansible_host=192.0.2.10
[migration_destination]
host-b migrate_address=192.0.2.20 ansible_host=192.0.2.20
"""
FEATURES = {"mem_dirty_track": True, "uffd": True, "uffd_noncoop": True}
REQUEST = {"ids": [], "pattern": "", "annotation": "", "mode": "live-migrate", "modes": {}, "memory_margin_mib": 64,
           "strategy": "auto", "transport": "nfs", "budget_ms": 1000, "learned_costs": {}}


def playbook(tmp_path: pathlib.Path, path: str, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook of the ansible-core that runs this test, with only the working tree's collection."""
    (tmp_path / "inventory").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "ansible.cfg").write_text("", encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1")
    argv = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory"), path, *args]
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)


def a_plan(tmp_path: pathlib.Path) -> pathlib.Path:
    container = {"status": "running", "pid": 7, "problems": [], "bind_sources": [], "annotations": {}, "memory_bytes": 1 << 20}
    source = {"features": FEATURES, "containers": [dict(container, id="web1"), dict(container, id="db"),
                                                   dict(container, id="cache", annotations={"ferry.runc.evacuate": "skip"})]}
    destination = {"criu_check": {"passed": True, "output": ""}, "cpu_check": {"passed": True, "output": ""},
                   "features": FEATURES, "containers": [], "memory_available_bytes": 1 << 30, "missing_paths": []}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(place("host-a", source, {"host-b": destination}, REQUEST)), encoding="utf-8")
    return path


def test_the_summary_gives_each_outcome_records_the_origin_and_fails_for_the_failed_move(tmp_path):
    result = playbook(tmp_path, str(SUMMARY_PLAYBOOK), "-e", f"plan_file={a_plan(tmp_path)}", "-e", f"report_dir={tmp_path}/reports")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "1 of the migrations did not move their container (db)" in result.stdout
    summary = json.loads((tmp_path / "reports/evacuate-host-a-run1.json").read_text(encoding="utf-8"))
    outcomes = {entry["container"]: (entry["outcome"], entry["destination"], entry["downtime_ms"]) for entry in summary["containers"]}
    assert outcomes == {"web1": ("migrated", "host-b", 900), "db": ("failed", "host-b", None), "cache": ("skipped", None, None)}
    assert summary["source"] == "host-a" and summary["return"] is False
    origin = json.loads((tmp_path / "reports/evacuate-host-a-origin.json").read_text(encoding="utf-8"))
    assert origin == {"source": "host-a", "containers": {"web1": {"container": "web1", "origin": "host-a", "destination": "host-b",
                                                                  "parallel": True, "migration_id": "web1-1"}}}


def test_a_return_in_check_mode_plans_exactly_the_recorded_containers_and_writes_nothing(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    origin = {"source": "host-a", "containers": {"web1": {"container": "web1", "origin": "host-a", "destination": "host-b",
                                                          "parallel": True, "migration_id": "web1-1"}}}
    (reports / "evacuate-host-a-origin.json").write_text(json.dumps(origin), encoding="utf-8")
    result = playbook(tmp_path, "ferry.runc.evacuate", "--check", "-e", "evacuate_return=true", "-e", f"migrate_report_dir={reports}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web1: host-b -> host-a, back to its origin (auto)" in result.stdout
    assert sorted(path.name for path in reports.iterdir()) == ["evacuate-host-a-origin.json"]


def test_a_return_without_an_origin_record_says_so_and_changes_nothing(tmp_path):
    result = playbook(tmp_path, "ferry.runc.evacuate", "-e", "evacuate_return=true", "-e", f"migrate_report_dir={tmp_path}/reports")
    assert result.returncode != 0
    assert "No evacuation of host-a recorded where its containers went" in result.stdout
    assert not (tmp_path / "reports").exists()
