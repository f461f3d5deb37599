"""runc_info through its main(): the YAML case table."""

from __future__ import annotations

from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.modules import runc_info


@module_cases(__file__)
def test_runc_info(case, run_module):
    check_output(run_module(runc_info, case["params"], case["commands"]), case["output"])
