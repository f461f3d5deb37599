# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running commands: through an AnsibleModule inside a module, through ProcessRunner inside an agent.

Both give ``run_command(argv, check_rc=False) -> (rc, out, err)`` and ``get_bin_path(name) -> path or None``; code in
module_utils takes either (a "runner") and never ends the module itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Mapping, Sequence

from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, InputError

# Commands parse English output; AnsibleModule.run_command pins the locale the same way.
C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ProcessRunner:
    """What an agent (a process outside Ansible) runs commands with: stdin from /dev/null, output captured."""

    def run_command(self, args: Sequence[Any], check_rc: bool = False) -> tuple[int, str, str]:
        argv = [str(arg) for arg in args]
        try:
            # The agents' own run_command: they run outside any AnsibleModule.
            done = subprocess.run(  # pylint: disable=subprocess-run-check,ansible-bad-function
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=dict(os.environ, **C_LOCALE), check=False
            )
        except OSError as exc:
            raise CommandError(f"cannot run {argv[0]}: {exc}") from exc
        if check_rc and done.returncode != 0:
            raise CommandError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")

    @staticmethod
    def get_bin_path(name: str, required: bool = False) -> str | None:
        path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", "")] + list(SYSTEM_PATH)))
        if required and not path:
            raise InputError(f"{name} is not installed (not found in PATH or {', '.join(SYSTEM_PATH)})")
        return path


def binary(runner: Any, name: str, given: str | None = None) -> str:
    """The path of a binary: the user's (which must be an executable file) or the one found on the PATH."""
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise InputError(f"{name}_path {given} is not an executable file")
        return given
    path = runner.get_bin_path(name)
    if not path:
        raise InputError(f"{name} is not installed (not found in PATH)")
    return path


# Processes


def process_start_time(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot, /proc/PID/stat field 22): with its pid, it names one
    process for good, where a pid alone may be reused. None when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if fields[0] != "Z" else None


def alive(identity: Mapping[str, Any] | None) -> bool:
    """Whether the process of an identity {pid, start_time} still runs."""
    return bool(identity) and process_start_time(identity["pid"]) == identity["start_time"]


def own_identity() -> dict[str, int]:
    return {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
