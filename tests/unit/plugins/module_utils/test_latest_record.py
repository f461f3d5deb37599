"""The newest migration record of a container on a host (_settle.latest_record), as runc_info returns it."""

from __future__ import annotations

import json
import os

from ansible_collections.ferry.runc.plugins.module_utils._settle import latest_record


def record(run_dir, migration_id: str, side: str, **status) -> None:
    os.makedirs(run_dir / migration_id, exist_ok=True)
    (run_dir / migration_id / f"{side}.json").write_text(json.dumps(status))


def test_the_newest_record_of_the_container_with_its_whole_progress(tmp_path):
    log = [{"index": 1, "phase": "pre-copy"}, {"index": 2, "phase": "pre-copy", "step": "pre-dump round 1"}]
    record(tmp_path, "m1", "sender", container="c1", updated=10, phase="done", finished=True, progress=log[-1],
           progress_log=log)
    record(tmp_path, "m2", "receiver", container="c1", updated=5, phase="done", finished=True)
    record(tmp_path, "m3", "sender", container="other", updated=20, phase="done", finished=True)
    (tmp_path / "m1" / "agent.json").write_text("{}")
    found = latest_record("c1", run_dir=str(tmp_path))
    assert (found["migration_id"], found["side"], found["phase"], found["finished"]) == ("m1", "sender", "done", True)
    assert found["progress_log"] == log


def test_no_record_of_the_container_is_none(tmp_path):
    record(tmp_path, "m3", "sender", container="other", updated=20)
    assert latest_record("c1", run_dir=str(tmp_path)) is None
