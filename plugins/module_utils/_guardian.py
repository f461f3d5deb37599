# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guardian of a migration's source: a process of its own (its own systemd unit), started by the sender before it
freezes the container. If the sender dies (SIGKILL, the OOM killer, a crash no handler sees) before the commit, the
guardian ends what the sender left running (a dump, a lazy dump's CRIU), resumes the container and records the
rollback, within about GUARD_INTERVAL seconds plus the time of `runc resume`. After the commit it touches nothing:
the container is the destination's then, and the controller settles what is left.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils import _transport
from ansible_collections.ferry.runc.plugins.module_utils._agent import StatusFile, read_json, status_path, write_json
from ansible_collections.ferry.runc.plugins.module_utils._commands import ProcessRunner, alive
from ansible_collections.ferry.runc.plugins.module_utils._errors import FerryError
from ansible_collections.ferry.runc.plugins.module_utils._protocol import SENDER_ENDS, SOURCE_IS_THE_CONTAINER, SenderPhase
from ansible_collections.ferry.runc.plugins.module_utils._runc import Runc

GUARD_INTERVAL = 0.5
# How long the processes the sender left are given to die after SIGKILL.
KILL_WAIT = 10.0


def run(params: dict[str, Any], status: StatusFile) -> dict[str, Any]:
    """Watch the sender until it ends; take over if it dies first."""
    sender_path = status_path(os.path.dirname(status.path), "sender")
    while True:
        sender = read_json(sender_path) or {}
        if sender.get("finished") or SenderPhase(sender.get("phase", "preparing")) in SENDER_ENDS:
            return {"outcome": "the sender ended on its own"}
        if not alive(params["sender"]):
            return take_over(params, sender, sender_path)
        time.sleep(GUARD_INTERVAL)


def take_over(params: dict[str, Any], sender: dict[str, Any], sender_path: str) -> dict[str, Any]:
    phase = SenderPhase(sender.get("phase", "preparing"))
    if phase not in SOURCE_IS_THE_CONTAINER:
        outcome = (f"the sender died {phase.value}: the migration was committed, so the source's copy stays frozen;"
                   " run the playbook again to settle it")
        _record_sender_end(sender_path, sender, phase, outcome)
        return {"outcome": outcome}
    _kill_left_processes(_sender_sessions(params["sender"], sender))
    runc = Runc(ProcessRunner(), params["runc_path"], params["root"])
    try:
        if runc.status(params["container"]) == "paused":
            runc.run("resume the container on the source (guardian)", "resume", params["container"])
        resumed = runc.copy_status(params["container"]) == "running"
    except FerryError:
        resumed = False
    if params["transport"] == "shared" and phase != SenderPhase.PREPARING:
        _transport.write_decision(params["image_dir"], _transport.ABORT)
    if resumed:
        outcome = f"the sender died {phase.value}; the guardian resumed the container on the source"
    else:
        outcome = (f"the sender died {phase.value} and the guardian could not resume the container: it is frozen on"
                   f" the source, run 'runc resume {params['container']}' there")
    _record_sender_end(sender_path, sender, SenderPhase.ROLLED_BACK, outcome, rolled_back=resumed)
    return {"outcome": outcome, "resumed": resumed}


def _record_sender_end(path: str, sender: dict[str, Any], phase: SenderPhase, outcome: str, rolled_back: bool = False) -> None:
    """The sender cannot write its end any more: the guardian does, so that migration_status reports it."""
    report = dict(sender.get("report") or {}, failed=True, phase=phase.value, rolled_back=rolled_back, recovery=outcome,
                  error=f"the sender agent died while {sender.get('phase', 'preparing')}")
    write_json(path, dict(sender, phase=phase.value, finished=True, ended=time.time(), died=True, result=report))


def _sender_sessions(identity: dict[str, Any], sender: dict[str, Any]) -> set[int]:
    """The sessions of what the sender started: its own, when it led one (an agent does), and its lazy dump's."""
    sessions = {identity["pid"]} if identity.get("session") == identity["pid"] else set()
    lazy = (sender.get("lazy_dump") or {}).get("pgid")
    return sessions | ({lazy} if lazy else set())


def _kill_left_processes(sessions: set[int]) -> None:
    """SIGKILL what the sender started and left: a runc checkpoint and its CRIU, the lazy dump. A CRIU killed while
    it holds the tasks lets them go; they stay frozen only if the container's cgroup was paused."""
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        left = [pid for pid, session in _sessions() if session in sessions and pid != os.getpid()]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _sessions() -> list[tuple[int, int]]:
    """(pid, session id) of every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found.append((int(entry), int(fields[3])))
    return found
