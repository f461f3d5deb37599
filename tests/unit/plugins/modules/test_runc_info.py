"""runc_info through its main(): the YAML case table."""

from __future__ import annotations

from pathlib import Path

from _runc_cases import prepare
from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.modules import runc_info


@module_cases(__file__)
def test_runc_info(case, run_module, tmp_path: Path):
    case = prepare(case, tmp_path)
    check_output(run_module(runc_info, case["params"], case["commands"]), case["output"])
