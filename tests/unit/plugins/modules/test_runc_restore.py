"""runc_restore through its main(): the YAML case table, then a restore followed by a rerun (idempotence)."""

from __future__ import annotations

import json
from pathlib import Path

from _runc_cases import check_absent, prepare
from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.modules import runc_restore


RESTORED = '{"id": "c1", "pid": 673, "status": "running", "bundle": "/srv/b/c1", "created": "2026-11-25T22:34:23.160458977Z"}'


@module_cases(__file__)
def test_runc_restore(case, run_module, tmp_path: Path):
    case = prepare(case, tmp_path)
    result = run_module(runc_restore, case["params"], case["commands"])
    check_output(result, case["output"])
    check_absent(case, tmp_path)


def test_a_restore_records_its_container_so_a_rerun_is_unchanged(run_module, tmp_path: Path):
    prepare({"files": {"bundle/config.json": "{}", "final/inventory.img": "", "final/pstree.img": ""}}, tmp_path)
    params = {"container_id": "c1", "bundle": f"{tmp_path}/bundle", "image_path": f"{tmp_path}/final"}
    state = ["/usr/bin/runc", "--root", "/run/runc", "state", "c1"]
    missing = {"argv": state, "rc": 1, "err": 'level=error msg="container does not exist"'}
    restore = {"argv": runc_restore_argv(tmp_path)}
    first = run_module(runc_restore, params, [missing, restore, {"argv": state, "out": RESTORED}])
    rerun = run_module(runc_restore, params, [{"argv": state, "out": RESTORED}])
    assert (first["changed"], rerun["changed"]) == (True, False)
    assert json.loads((tmp_path / "final" / "ferry-restore-c1.json").read_text()) == {
        "container_id": "c1",
        "image_path": str((tmp_path / "final").resolve()),
        "pid": 673,
        "created": "2026-11-25T22:34:23.160458977Z",
    }


def runc_restore_argv(tmp_path: Path) -> list[str]:
    final = f"{tmp_path}/final"
    return [
        "/usr/bin/runc", "--root", "/run/runc", "--criu", "/usr/bin/criu", "restore",
        "--image-path", final, "--work-path", final, "--bundle", f"{tmp_path}/bundle", "--detach", "c1",
    ]  # fmt: skip
