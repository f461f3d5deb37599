# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""runc on the target, as a command library: command lines, container state, runc's errors, the background runc of a
lazy-pages dump. Failures raise CommandError; the modules' own work is in _runc_work.py."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
from typing import Any, Mapping

from ansible_collections.ferry.runc.plugins.module_utils import _options
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError

DEFAULT_ROOT = "/run/runc"
EMPTY_NAMESPACES = ["network"]
CHECKPOINTABLE_STATUSES = ("running", "paused")
# The lazy-pages checkpoint runs in the background; CRIU writes one byte on this descriptor once the
# non-memory images are complete.
CHECKPOINT_STATUS_FD = 3
LAZY_RUNC_LOG = "runc-lazy-checkpoint.log"
LAZY_PAGES_SOCKET = "lazy-pages.socket"
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"
DUMP_STATS = "stats-dump"
RESTORE_STATS = "stats-restore"
# A container that runc says runs, and whose every task is stopped (SIGSTOP): a held restore, or a dump that read
# leave-stopped.
HELD = "held"
RUNC_ERROR = re.compile(r'level=error msg="((?:[^"\\]|\\.)*)"')

COMMON_ARGUMENT_SPEC = {
    "root": {"type": "path", "default": DEFAULT_ROOT},
    "runc_path": {"type": "path"},
    "criu_path": {"type": "path"},
}


# Command lines


def checkpoint_argv(runc_path: str, params: Mapping[str, Any]) -> list[str]:
    """Return the `runc checkpoint` command line for module params, one flag per option, in a fixed order."""
    argv = _subcommand(runc_path, params, "checkpoint") + _image_and_work_paths(params)
    argv += _value("--parent-path", params.get("parent_path"))
    argv += _switch("--pre-dump", params.get("pre_dump"))
    argv += _switch("--leave-running", params.get("leave_running"))
    argv += _value("--page-server", params.get("page_server"))
    if params.get("lazy_pages"):
        argv += ["--lazy-pages", "--status-fd", str(CHECKPOINT_STATUS_FD)]
    argv += _options.argv(params)
    argv += _switch("--auto-dedup", params.get("auto_dedup"))
    for namespace in params.get("empty_ns") or []:
        argv += ["--empty-ns", namespace]
    return argv + [params["container_id"]]


def restore_argv(runc_path: str, params: Mapping[str, Any]) -> list[str]:
    """Return the `runc restore` command line for module params, one flag per option, in a fixed order."""
    argv = _subcommand(runc_path, params, "restore") + _image_and_work_paths(params)
    argv += ["--bundle", params["bundle"]]
    argv += _switch("--detach", params.get("detach"))
    argv += _value("--pid-file", params.get("pid_file"))
    argv += _switch("--lazy-pages", params.get("lazy_pages"))
    argv += _options.argv(params)
    return argv + [params["container_id"]]


def work_path(params: Mapping[str, Any]) -> str:
    """CRIU's work directory (its logs and stats): work_path, else image_path as with CRIU itself."""
    return params.get("work_path") or params["image_path"]


def _subcommand(runc_path: str, params: Mapping[str, Any], subcommand: str) -> list[str]:
    argv = [runc_path, "--root", params.get("root") or DEFAULT_ROOT]
    argv += _value("--criu", params.get("criu_path"))
    return argv + [subcommand]


def _image_and_work_paths(params: Mapping[str, Any]) -> list[str]:
    return ["--image-path", params["image_path"], "--work-path", work_path(params)]


def _switch(flag: str, enabled: Any) -> list[str]:
    return [flag] if enabled else []


def _value(flag: str, value: Any) -> list[str]:
    return [flag, str(value)] if value else []


def runc_error(output: str) -> str:
    """The error messages of runc's log lines in output (runc quotes them), else the whole output stripped."""
    messages = [message.replace("\\n", "; ").replace('\\"', '"') for message in RUNC_ERROR.findall(output)]
    return "; ".join(messages) or output.strip()


# Containers


class Runc:
    """One runc binary and state directory, driven through a runner (AnsibleModule or ProcessRunner)."""

    def __init__(self, runner: Any, runc_path: str, root: str | None = None) -> None:
        self.runner = runner
        self.path = runc_path
        self.root = root or DEFAULT_ROOT

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *args]

    def state(self, container_id: str) -> dict | None:
        """The parsed `runc state` of a container, None when runc knows no container with that id."""
        rc, out, err = self.runner.run_command(self.argv("state", container_id), check_rc=False)
        if rc != 0 and "does not exist" in err:
            return None
        return _json_output(rc, out, err, f"reading the state of container {container_id}")

    def status(self, container_id: str) -> str:
        """running, paused, stopped, ... or absent; unknown when runc cannot tell."""
        try:
            state = self.state(container_id)
        except CommandError:
            return "unknown"
        return "absent" if state is None else state.get("status", "unknown")

    def copy_status(self, container_id: str) -> str:
        """status(), or held when runc says running but every task is stopped (as a held restore leaves them)."""
        status = self.status(container_id)
        if status == "running":
            try:
                processes = self.processes(container_id)
            except CommandError:
                # Deleted between the two looks (the sender's release of the source): what runc says now.
                return self.status(container_id)
            if processes and all(task_state(pid) == "T" for pid in processes):
                return HELD
        return status

    def containers(self) -> list[dict]:
        """The parsed `runc list` of every container under the root (runc prints null for none)."""
        rc, out, err = self.runner.run_command(self.argv("list", "--format", "json"), check_rc=False)
        return _json_output(rc, out, err, f"listing the containers under {self.root}") or []

    def processes(self, container_id: str) -> list[int]:
        """The pids of every process of the container (`runc ps --format json`)."""
        rc, out, err = self.runner.run_command(self.argv("ps", "--format", "json", container_id), check_rc=False)
        return _json_output(rc, out, err, f"listing the processes of container {container_id}") or []

    def run(self, step: str, *args: str) -> None:
        """A runc command whose only result is success; a failure raises with runc's own message."""
        rc, out, err = self.runner.run_command(self.argv(*args), check_rc=False)
        if rc != 0:
            raise CommandError(runc_error(err or out) or f"runc exited with {rc}", step=step)

    def version(self) -> str:
        """runc's version ("1.1.5+ds1") from `runc --version`."""
        rc, out, err = self.runner.run_command([self.path, "--version"], check_rc=False)
        match = re.search(r"^runc version (\S+)", out, re.MULTILINE)
        if rc != 0 or not match:
            raise CommandError(f"{self.path} --version exited with {rc}: {(err or out).strip()}", step="reading the runc version")
        return match.group(1)


def task_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2]


def _json_output(rc: int, out: str, err: str, step: str) -> Any:
    if rc != 0:
        raise CommandError(f"runc exited with {rc}: {runc_error(err or out)}", step=step)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CommandError(f"runc printed no JSON ({exc}): {out!r}", step=step) from exc


# The background runc of a lazy-pages dump


def spawn_detached(argv: list[str], log_path: str, status_fd: int) -> subprocess.Popen:
    """Start argv in its own session (an SSH session or an agent can end without it), stdin from /dev/null, stdout
    and stderr appended to log_path, and status_fd as its descriptor CHECKPOINT_STATUS_FD."""
    with open(log_path, "ab") as log:
        # run_command waits for the command's end; this runc must outlive the module.
        return subprocess.Popen(  # pylint: disable=consider-using-with,ansible-bad-function
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(CHECKPOINT_STATUS_FD,),
            preexec_fn=lambda: os.dup2(status_fd, CHECKPOINT_STATUS_FD),  # pylint: disable=subprocess-popen-preexec-fn
            start_new_session=True,
        )


def read_status(read_fd: int, timeout: float) -> bytes | None:
    """CRIU's status byte; b"" when every writer closed the pipe without one (runc exited), None after timeout seconds."""
    readable, _w, _x = select.select([read_fd], [], [], timeout)
    return os.read(read_fd, 1) if readable else None
