"""Helpers for the YAML case tables of runc_checkpoint, runc_restore and runc_info.

A case may name files to create before the run (``files``: path relative to the test's tmp_path, and content:
text, ``fixture:NAME`` for a copy of tests/unit/fixtures/criu/NAME, ``symlink:TARGET`` or ``script:TEXT`` for an
executable) and paths that must not exist after it (``absent``). ``{tmp}`` anywhere in a case stands for tmp_path,
``{host}`` for this host's name (errors name it).
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any


FIXTURES = Path(__file__).parents[2] / "fixtures" / "criu"


def prepare(case: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Return the case with {tmp} replaced by tmp_path, after creating its files."""
    case = _substitute(case, str(tmp_path.resolve()))
    for name, content in case.get("files", {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        kind, _sep, value = content.partition(":")
        if kind == "symlink":
            path.symlink_to(value)
        elif kind == "fixture":
            shutil.copyfile(FIXTURES / value, path)
        elif kind == "script":
            path.write_text(value)
            path.chmod(0o755)
        else:
            path.write_text(content)
    return case


def check_absent(case: dict[str, Any], tmp_path: Path) -> None:
    """Assert that the run left none of the case's absent paths behind."""
    for name in case.get("absent", []):
        assert not (tmp_path / name).exists(), f"{name} exists after the run"


def _substitute(value: Any, tmp: str) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", tmp).replace("{host}", platform.node())
    if isinstance(value, list):
        return [_substitute(item, tmp) for item in value]
    if isinstance(value, dict):
        return {_substitute(key, tmp): _substitute(item, tmp) for key, item in value.items()}
    return value
