"""Shared unit-test helpers: run a module's main() in-process with run_command mocked.

A test lists the commands the module must run, in order, each with the exact argv and the rc/out/err
the mock answers. An unexpected or missing command fails the test. Case files in YAML (community.general
style) use the same structure: see ``module_cases``.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import threading
from typing import Any, Callable, Iterator, Optional
from unittest import mock

import pytest
import yaml

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19 has no testing helper; AnsibleModule reads the same _ANSIBLE_ARGS there.

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, Any] | None = None) -> Iterator[None]:
        """Expose the given module args to AnsibleModule instances created within this context."""
        encoded = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", encoded):
            yield


FAKE_BIN_DIR = "/usr/bin"


class CommandMock:
    """Replaces AnsibleModule.run_command; answers the expected commands in order."""

    def __init__(self, expected: list[dict[str, Any]]) -> None:
        self.expected = list(expected)
        self.calls: list[list[str]] = []

    def __call__(self, module: AnsibleModule, args: list[str], **kwargs: Any) -> tuple[int, str, str]:
        argv = [str(arg) for arg in args]
        self.calls.append(argv)
        assert self.expected, f"unexpected command: {argv}"
        step = self.expected.pop(0)
        assert argv == step["argv"], f"command {len(self.calls)}: expected {step['argv']}, got {argv}"
        return step.get("rc", 0), step.get("out", ""), step.get("err", "")


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Return a function that runs module.main() with params and expected commands, and returns its JSON."""

    def run(module: Any, params: dict[str, Any], commands: list[dict[str, Any]] = ()) -> dict[str, Any]:
        mock = CommandMock(list(commands))

        def run_command(self: AnsibleModule, args: list[str], **kwargs: Any) -> tuple[int, str, str]:
            return mock(self, args, **kwargs)

        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(
            AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: f"{FAKE_BIN_DIR}/{name}"
        )
        with patch_module_args(params), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        assert not mock.expected, f"commands never run: {[step['argv'] for step in mock.expected]}"
        return result

    return run


def module_cases(test_file: str) -> pytest.MarkDecorator:
    """Parametrize a test with the cases of the YAML file next to test_file (same name, .yaml).

    Each case has ``id``, ``params``, ``commands`` (as for run_module) and ``output``: keys the result must
    hold with these exact values (``msg_contains`` checks a substring of ``msg`` instead).
    """
    cases = yaml.safe_load(pathlib.Path(test_file).with_suffix(".yaml").read_text(encoding="utf-8"))
    return pytest.mark.parametrize("case", cases, ids=[case["id"] for case in cases])


def check_output(result: dict[str, Any], expected: dict[str, Any]) -> None:
    """Assert that result holds every expected key with its value."""
    for key, value in expected.items():
        if key == "msg_contains":
            assert value in result.get("msg", ""), f"msg {result.get('msg')!r} lacks {value!r}"
        else:
            assert result.get(key) == value, f"{key}: expected {value!r}, got {result.get(key)!r}"


class Background:
    """Run a call in a daemon thread; result() re-raises what it raised."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(func, *args), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., Any], *args: Any) -> None:
        try:
            self._value = func(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc

    def done(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self, timeout: float = 10.0) -> Any:
        assert self.done(timeout), f"the background call did not finish within {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value
