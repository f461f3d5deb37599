"""runc_info through its main(): the YAML case table."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from _runc_cases import prepare
from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.module_utils import _runc_work
from ansible_collections.ferry.runc.plugins.module_utils._errors import InputError
from ansible_collections.ferry.runc.plugins.modules import runc_info


@module_cases(__file__)
def test_runc_info(case, run_module, tmp_path: Path):
    case = prepare(case, tmp_path)
    check_output(run_module(runc_info, case["params"], case["commands"]), case["output"])


class CpuinfoCommands:
    """criu cpuinfo dump and check as run_command sees them: in a new directory under /run, removed afterwards."""

    def __init__(self, rc: int = 0) -> None:
        self.rc, self.directories = rc, []

    def run_command(self, argv: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        assert argv[:3] == ["/usr/sbin/criu", "cpuinfo", argv[2]] and argv[3] == "-D" and len(argv) == 5
        directory = Path(argv[4])
        assert directory.parent == Path("/run") and directory.name.startswith("ferry-cpuinfo-")
        self.directories.append(directory)
        if argv[2] == "dump":
            (directory / "cpuinfo.img").write_bytes(b"\x01cpu")
            return 0, "", ""
        assert (directory / "cpuinfo.img").read_bytes() == b"\x01cpu"
        return self.rc, "", "" if self.rc == 0 else "Error (criu/cpu.c:304): cpu: CPU has no avx2\n"


def test_a_cpu_image_is_dumped_and_checked_in_a_directory_that_goes_away():
    commands = CpuinfoCommands()
    image = _runc_work._cpu_image(commands, "/usr/sbin/criu")
    assert base64.b64decode(image) == b"\x01cpu"
    assert _runc_work._cpu_check(commands, "/usr/sbin/criu", image) == {"passed": True, "output": ""}
    assert len(commands.directories) == 2 and not any(directory.exists() for directory in commands.directories)


def test_a_cpu_without_a_feature_of_the_other_fails_the_check():
    check = _runc_work._cpu_check(CpuinfoCommands(rc=1), "/usr/sbin/criu", base64.b64encode(b"\x01cpu").decode())
    assert check == {"passed": False, "output": "Error (criu/cpu.c:304): cpu: CPU has no avx2"}


def test_a_cpu_image_that_is_not_base64_is_refused():
    with pytest.raises(InputError, match="check_cpu_image is not base64"):
        _runc_work._cpu_check(CpuinfoCommands(), "/usr/sbin/criu", "not base64!")
