"""nfs_export through main(): the YAML case table against a stand-in /etc (exports and exports.d) in tmp_path."""

from __future__ import annotations

import platform
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from conftest import check_output, module_cases

from ansible_collections.ferry.runc.plugins.module_utils import _exports
from ansible_collections.ferry.runc.plugins.modules import nfs_export


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in /etc with an empty exports file and exports.d, which the module uses instead of the real ones."""
    root = tmp_path / "etc"
    (root / "exports.d").mkdir(parents=True)
    (root / "exports").write_text("# /etc/exports\n", encoding="utf-8")
    monkeypatch.setattr(_exports, "EXPORTS_FILE", str(root / "exports"))
    monkeypatch.setattr(_exports, "EXPORTS_DIR", str(root / "exports.d"))
    return root


def fill(value: Any, placeholders: dict[str, str]) -> Any:
    """The case with every placeholder in its strings replaced."""
    if isinstance(value, str):
        for name, text in placeholders.items():
            value = value.replace(name, text)
        return value
    if isinstance(value, list):
        return [fill(item, placeholders) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, placeholders) for key, item in value.items()}
    return value


def directory_mode(path: Path) -> str | None:
    """The directory's mode as four octal digits, or None when it does not exist."""
    return f"{stat.S_IMODE(path.stat().st_mode):04o}" if path.is_dir() else None


@module_cases(__file__)
def test_nfs_export(case, run_module, tmp_path: Path, etc: Path, monkeypatch: pytest.MonkeyPatch):
    # In-process, the warnings go to the controller's display instead of the result: record them here.
    warnings: list[str] = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda module, warning: warnings.append(warning))
    export = tmp_path / "srv" / "ferry-runc"
    managed = etc / "exports.d" / _exports.managed_file_name(str(export))
    case = fill(case, {"{path}": str(export), "{file}": str(managed), "{etc}": str(etc), "{host}": platform.node()})
    if case.get("directory", True):
        export.mkdir(parents=True)
        export.chmod(0o755)
    if "managed" in case:
        managed.write_text(case["managed"], encoding="utf-8")
    if "exports" in case:
        (etc / "exports").write_text(case["exports"], encoding="utf-8")

    result = run_module(nfs_export, case["params"], case.get("commands", []))

    check_output(result, case["output"])
    assert warnings == case.get("warnings", [])
    assert (managed.read_text(encoding="utf-8") if managed.exists() else None) == case["file_after"]
    if "directory_after" in case:
        assert directory_mode(export) == case["directory_after"]
    assert not [name for name in (etc / "exports.d").iterdir() if name.name.startswith(".")], "temporary file left"
