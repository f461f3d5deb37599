"""runc command lines (_runc.checkpoint_argv / restore_argv, case table in test_runc.yaml) and runc's error messages."""

from __future__ import annotations

import pytest
from conftest import module_cases

from ansible_collections.ferry.runc.plugins.module_utils._runc import Runc, checkpoint_argv, restore_argv, runc_error

BUILDERS = {"checkpoint": checkpoint_argv, "restore": restore_argv}


@module_cases(__file__)
def test_every_option_has_its_flag_at_its_place(case):
    assert BUILDERS[case["builder"]]("/bin/runc", case["params"]) == case["argv"]


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (
            'time="2026-11-25T22:35:40Z" level=error msg="container still running"\n'
            'time="2026-11-25T22:35:40Z" level=error msg="criu failed: type NOTIFY errno 0\\nlog file: /i/dump.log"\n',
            "container still running; criu failed: type NOTIFY errno 0; log file: /i/dump.log",
        ),
        ('time="2026-11-25T22:39:29Z" level=error msg="namespace \\"pid\\" is not supported"\n', 'namespace "pid" is not supported'),
        ("runc: command not found\n", "runc: command not found"),
    ],
    ids=["two-log-lines", "quoted-quotes", "not-a-log-line"],
)
def test_runc_errors_are_read_from_its_log_lines(output: str, error: str):
    assert runc_error(output) == error


class ScriptedRunner:
    """Answers each command with the next scripted (argv, result) and records what was asked."""

    def __init__(self, script: list[tuple[list[str], tuple[int, str, str]]]) -> None:
        self.script = list(script)

    def run_command(self, args: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        expected, result = self.script.pop(0)
        assert args == expected
        return result


RUNC = ["/usr/sbin/runc", "--root", "/run/runc"]
RUNNING = (0, '{"id": "web1", "status": "running"}', "")
GONE = (1, "", 'time="2026-12-02T00:40:00Z" level=error msg="container does not exist"\n')


def test_a_container_deleted_between_its_state_and_its_processes_is_absent():
    runner = ScriptedRunner([
        (RUNC + ["state", "web1"], RUNNING),
        (RUNC + ["ps", "--format", "json", "web1"], GONE),
        (RUNC + ["state", "web1"], GONE),
    ])
    assert Runc(runner, "/usr/sbin/runc", "/run/runc").copy_status("web1") == "absent"
    assert not runner.script
