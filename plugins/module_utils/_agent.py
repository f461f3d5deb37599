# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents of a migration as processes of their own, outside Ansible and its async wrapper.

migration_sender and migration_receiver write the agent's code (a zip their action plugins send along) and its
parameters into the migration's directory under /run/ferry-runc (a tmpfs: the secret and the TLS key never touch
persistent storage, and the parameters file is removed as soon as the agent has read it), start it as a transient
systemd unit (its output in the journal) and return at once; migration_status awaits it through its status file.
KillMode=process: when an agent dies, the runc and CRIU it started go on (a lazy dump keeps serving pages, a restore
finishes held); the guardian (a unit of its own) watches the sender.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping

from ansible_collections.ferry.runc.plugins.module_utils import _protocol, _strategy
from ansible_collections.ferry.runc.plugins.module_utils._commands import binary, own_identity
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, InputError

RUN_DIR = "/run/ferry-runc"
SIDES = ("sender", "receiver", "guardian")
AGENT_CODE = "agent.zip"
UNIT_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-")


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached an agent (systemd stopping its unit): it runs its recovery like any other failure."""


def migration_dir(migration_id: str, run_dir: str = RUN_DIR) -> str:
    if not migration_id or "/" in migration_id or migration_id in (".", ".."):
        raise InputError(f"migration_id {migration_id!r} must be a plain name")
    return os.path.join(run_dir, migration_id)


def status_path(directory: str, side: str) -> str:
    return os.path.join(directory, f"{side}.json")


def unit_name(migration_id: str, side: str) -> str:
    """A systemd unit name for the agent, escaped the way systemd-escape does."""
    escaped = "".join(char if char in UNIT_NAME_CHARACTERS else f"\\x{ord(char):02x}" for char in migration_id)
    return f"ferry-{escaped}-{side}.service"


# -- the status file: progress for migration_status, and the phase the guardian and the controller decide on --------


class StatusFile:
    """One agent's status: written whole and renamed into place at each change, so a reader never sees half of it."""

    def __init__(self, path: str, **first: Any) -> None:
        self.path = path
        self.fields: dict[str, Any] = {}
        self.write(**first)

    def write(self, **changes: Any) -> None:
        self.fields.update(changes, updated=time.time())
        write_json(self.path, self.fields)


def write_json(path: str, content: Mapping[str, Any]) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(path))
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(content, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


# -- starting an agent ---------------------------------------------------------------------------------------------


def install(migration_id: str, code: str, run_dir: str = RUN_DIR) -> str:
    """Create the migration's root-only directory (if needed) and put the agent's code there; returns the directory."""
    directory = migration_dir(migration_id, run_dir)
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    target = os.path.join(directory, AGENT_CODE)
    descriptor, temporary = tempfile.mkstemp(prefix=".", dir=directory)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(base64.b64decode(code))
    os.replace(temporary, target)
    return directory


def launch(runner: Any, directory: str, side: str, params: Mapping[str, Any], launcher: str = "systemd") -> dict[str, Any]:
    """Start one agent of the migration in directory with params; returns its unit (or pid) and status file.

    launcher systemd (what the modules use) starts a transient unit; process a plain child in a session of its own."""
    command = agent_command(directory, side, write_params(directory, side, params, launcher))
    if launcher == "process":
        # The agent outlives the module that starts it, which run_command cannot do.
        process = subprocess.Popen(  # pylint: disable=consider-using-with,ansible-bad-function
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        return {"pid": process.pid, "status_path": status_path(directory, side)}
    unit = unit_name(os.path.basename(directory), side)
    argv = [
        runner.get_bin_path("systemd-run") or "systemd-run", f"--unit={unit}", "--collect", "--quiet",
        "--property=KillMode=process", f"--property=RuntimeMaxSec={int(params['timeout']) + 600}",
        f"--description=ferry.runc migration {os.path.basename(directory)}: {side}", "--", *command,
    ]  # fmt: skip
    rc, out, err = runner.run_command(argv, check_rc=False)
    if rc != 0:
        os.unlink(command[-1])
        raise CommandError(f"systemd-run exited with {rc}: {(err or out).strip()}", step=f"starting the {side}")
    return {"unit": unit, "status_path": status_path(directory, side)}


def write_params(directory: str, side: str, params: Mapping[str, Any], launcher: str) -> str:
    """The agent's parameters, root-only, in the migration's directory (on a tmpfs); it removes them once read."""
    if side not in SIDES:
        raise InputError(f"unknown agent {side!r}")
    if os.path.exists(status_path(directory, side)):
        raise InputError(f"an agent {side} already ran for this migration ({status_path(directory, side)} exists); choose another migration id")
    params_path = os.path.join(directory, f".{side}.params.json")
    descriptor = os.open(params_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(dict(params, launcher=launcher), handle)
    return params_path


def agent_command(directory: str, side: str, params_path: str) -> list[str]:
    return [sys.executable, os.path.join(directory, AGENT_CODE), side, params_path]


# -- the modules that start agents (migration_sender, migration_receiver) -------------------------------------------

AGENT_ARGUMENT_SPEC = {
    "migration_id": {"type": "str", "required": True},
    "container": {"type": "str", "required": True},
    "image_dir": {"type": "path", "required": True},
    "secret": {"type": "str", "required": True, "no_log": True},
    "connect_timeout": {"type": "int", "default": 120},
    "timeout": {"type": "int", "default": 3600},
    "link_timeout": {"type": "int", "default": 20},
    "indoubt_timeout": {"type": "int", "default": 120},
    "tls_cacert": {"type": "str"},
    "tls_cert": {"type": "str"},
    "tls_key": {"type": "str", "no_log": True},
    "page_stream_plaintext": {"type": "bool", "default": False},
    "root": {"type": "path"},
    "runc_path": {"type": "path"},
    "criu_path": {"type": "path"},
    # Not a secret, but some 100 KiB that a task's result should not repeat.
    "agent_code": {"type": "str", "no_log": True},
}


def _sender_problem(params: dict[str, Any]) -> str | None:
    """What makes a sender's request impossible before anything starts, or None."""
    strategies = [params["strategy"], *params["candidates"]]
    if params["candidates"] and params["strategy"] != "pre-copy":
        return "candidates need strategy pre-copy: the choice among them comes after the first pre-dump round"
    if _strategy.any_lazy(strategies) and not params["lazy_address"]:
        return "lazy_address is needed: post-copy or hybrid may be chosen, whose destination fetches pages from here"
    transport_problems = [_strategy.transport_problem(strategy, params["transport"]) for strategy in strategies]
    stream = _protocol.page_stream(params["transport"], strategies, bool(params["tls_cert"]))
    return next(filter(None, transport_problems), None) or _protocol.plaintext_problem(stream, params["page_stream_plaintext"])


def start(module: Any, side: str) -> dict[str, Any]:
    """The work of migration_sender and migration_receiver: check the request, then start the agent and return."""
    params = dict(module.params)
    code = params.pop("agent_code")
    if not code:
        raise InputError("agent_code is missing: the module runs through its action plugin (ansible-playbook or ansible)")
    if side == "sender":
        problem = _sender_problem(params)
        if problem:
            raise InputError(problem, step="starting the sender")
    params["runc_path"] = binary(module, "runc", params["runc_path"])
    params["criu_path"] = binary(module, "criu", params["criu_path"])
    directory = migration_dir(params["migration_id"])
    result = {"changed": True, "migration_id": params["migration_id"], "status_path": status_path(directory, side),
              "unit": unit_name(params["migration_id"], side)}
    if module.check_mode:
        return result
    install(params["migration_id"], code)
    result.update(launch(module, directory, side, params))
    return result


# -- inside the agent process --------------------------------------------------------------------------------------


def _terminate(signum: int, _frame: Any) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    """`python3 agent.zip SIDE PARAMS_PATH`: read the parameters (then remove them), run the side, record its end."""
    side, params_path = argv[1], argv[2]
    with open(params_path, encoding="utf-8") as handle:
        params = json.load(handle)
    os.unlink(params_path)
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(number, _terminate)
    status = StatusFile(status_path(os.path.dirname(params_path), side), side=side, agent=own_identity(),
                        container=params.get("container"), started=time.time(), finished=False)
    # Imported here: each side's module imports this one.
    from ansible_collections.ferry.runc.plugins.module_utils import _guardian, _receiver, _sender  # pylint: disable=import-outside-toplevel

    run = {"sender": _sender.run, "receiver": _receiver.run, "guardian": _guardian.run}[side]
    result = run(params, status)
    status.write(finished=True, ended=time.time(), result=result)
    return 1 if result.get("failed") else 0
