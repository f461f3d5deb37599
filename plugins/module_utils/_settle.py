# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the controller does with a migration's agents: await one and see its host (migration_status), and carry out
on one host the step that settles a migration whose agents lost each other (migration_resolve, decided by
_protocol.resolve through the migration_resolution filter)."""

from __future__ import annotations

import glob
import os
import signal
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils._agent import RUN_DIR, migration_dir, read_json, status_path, write_json
from ansible_collections.ferry.runc.plugins.module_utils._commands import alive, binary
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, InputError
from ansible_collections.ferry.runc.plugins.module_utils._protocol import SOURCE_IS_THE_CONTAINER, ReceiverPhase, SenderPhase
from ansible_collections.ferry.runc.plugins.module_utils._runc import HELD, Runc, task_state

POLL_INTERVAL = 0.25
# A receiver that died during its restore leaves a held copy behind it while its record still says restoring.
HELD_PHASES = (ReceiverPhase.RESTORING.value, ReceiverPhase.HELD.value, ReceiverPhase.IN_DOUBT.value)
# How long deleting a post-copy source waits for its lazy dump to finish serving the destination's pages.
LAZY_DUMP_WAIT = 300


def agent_status(module: Any) -> dict[str, Any]:
    """The work of migration_status: wait (up to wait seconds) until the agent writes something new or ends, then
    return what it says and the container's runc status on this host."""
    params = module.params
    directory = migration_dir(params["migration_id"])
    path = status_path(directory, params["side"])
    guardian_path = status_path(directory, "guardian") if params["side"] == "sender" else None
    deadline = time.monotonic() + params["wait"]
    status, guarded = _read(path, guardian_path)
    first_update = (status or {}).get("updated")
    while time.monotonic() < deadline and not _ended(status, guarded) and (status or {}).get("updated") == first_update:
        time.sleep(POLL_INTERVAL)
        status, guarded = _read(path, guardian_path)
    runc = Runc(module, binary(module, "runc", params["runc_path"]), params["root"])
    return dict(_summary(status, params["progress_since"], guarded), changed=False,
                container_status=runc.copy_status(params["container"]))


def _read(path: str, guardian_path: str | None) -> tuple[dict | None, bool]:
    """The agent's status and whether the sender's guardian is at work: a sender that died has not ended until its
    guardian recorded how (resumed, or frozen after the commit), within about a second of the death. The guardian
    writes the sender's end before its own, so the guardian is read first: once it has finished, the status read
    after it holds the end it wrote."""
    guardian = read_json(guardian_path) if guardian_path else None
    guarded = bool(guardian) and not guardian.get("finished") and alive(guardian.get("agent"))
    return read_json(path), guarded


def _ended(status: dict | None, guarded: bool) -> bool:
    return bool(status) and (bool(status.get("finished")) or _died(status, guarded))


def _died(status: dict, guarded: bool) -> bool:
    """Whether the agent ended without recording its end, and no guardian is left to record it."""
    return not status.get("finished") and not alive(status.get("agent")) and not guarded


def _summary(status: dict | None, since: int = 0, guarded: bool = False) -> dict[str, Any]:
    if status is None:
        return {"found": False, "finished": False, "died": False, "phase": None, "progress": {}, "progress_log": [],
                "result": {}}
    died = _died(status, guarded)
    return {
        "found": True,
        "finished": bool(status.get("finished")) or died,
        "died": died or bool(status.get("died")),
        "phase": status.get("phase"),
        "progress": status.get("progress") or {},
        "progress_log": [entry for entry in status.get("progress_log") or [] if entry["index"] > since],
        "result": status.get("result") or {},
        "history": status.get("history") or [],
    }


def latest_record(container: str, run_dir: str = RUN_DIR) -> dict[str, Any] | None:
    """The newest migration record of a container on this host (for a rerun to find an unsettled migration)."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "*", "*.json")):
        side = os.path.basename(path)[:-len(".json")]
        status = read_json(path) if side in ("sender", "receiver") else None
        if status and status.get("container") == container:
            found.append((status.get("updated", 0), os.path.basename(os.path.dirname(path)), side, status))
    if not found:
        return None
    _updated, migration_id, side, status = max(found, key=lambda item: item[0])
    return dict(_summary(status), migration_id=migration_id, side=side)


# -- migration_resolve ---------------------------------------------------------------------------------------------

ACTIONS = {("sender", "resume"), ("sender", "delete"), ("receiver", "release"), ("receiver", "delete")}


def resolve_step(module: Any) -> dict[str, Any]:
    """The work of migration_resolve: one step of a resolution on this host, only if what it rests on still holds."""
    params = module.params
    side, action, container = params["side"], params["action"], params["container"]
    if (side, action) not in ACTIONS:
        raise InputError(f"{action} is not a step on the {side}'s host", step="resolve")
    path = status_path(migration_dir(params["migration_id"]), side)
    status = read_json(path)
    if status is None:
        raise InputError(f"no {side} of migration {params['migration_id']} ran here", step="resolve")
    if alive(status.get("agent")):
        raise InputError(f"the {side} agent still runs (pid {status['agent']['pid']}); await it first", step="resolve")
    runc = Runc(module, binary(module, "runc", params["runc_path"]), params["root"])
    step = STEPS[(side, action)]
    result = {"changed": False, "side": side, "action": action, "phase_before": status.get("phase")}
    if not step.needed(runc, container, status):
        return result
    step.check(runc, container, status)
    if module.check_mode:
        return dict(result, changed=True)
    phase = step.apply(runc, container, status)
    write_json(path, dict(status, phase=phase, settled_by_controller=action, updated=time.time()))
    return dict(result, changed=True, phase_after=phase)


class Step:
    """One way to settle a host's copy: when it is needed, what must hold first, and what it does."""

    def needed(self, runc: Runc, container: str, status: dict) -> bool:
        raise NotImplementedError

    def check(self, runc: Runc, container: str, status: dict) -> None:
        raise NotImplementedError

    def apply(self, runc: Runc, container: str, status: dict) -> str:
        raise NotImplementedError


class ResumeSource(Step):
    def needed(self, runc: Runc, container: str, status: dict) -> bool:
        return runc.status(container) == "paused"

    def check(self, runc: Runc, container: str, status: dict) -> None:
        if SenderPhase(status["phase"]) not in SOURCE_IS_THE_CONTAINER:
            raise InputError(f"the migration was committed ({status['phase']}): the source's copy must not run again", step="resolve")

    def apply(self, runc: Runc, container: str, status: dict) -> str:
        _kill_session((status.get("lazy_dump") or {}).get("pgid"))
        runc.run("resume the source's copy", "resume", container)
        return SenderPhase.ROLLED_BACK.value


class DeleteSource(Step):
    def needed(self, runc: Runc, container: str, status: dict) -> bool:
        return runc.status(container) != "absent"

    def check(self, runc: Runc, container: str, status: dict) -> None:
        if SenderPhase(status["phase"]) in SOURCE_IS_THE_CONTAINER:
            raise InputError(f"the migration was not committed ({status['phase']}): the source's copy is the container", step="resolve")
        lazy_dump = (status.get("lazy_dump") or {}).get("pgid")
        deadline = time.monotonic() + LAZY_DUMP_WAIT
        while _session_runs(lazy_dump) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        if _session_runs(lazy_dump):
            raise InputError(f"the source's lazy dump still serves pages to the destination after {LAZY_DUMP_WAIT} s", step="resolve")

    def apply(self, runc: Runc, container: str, status: dict) -> str:
        runc.run("delete the source's frozen copy", "delete", "--force", container)
        return SenderPhase.DONE.value


class ReleaseDestination(Step):
    def needed(self, runc: Runc, container: str, status: dict) -> bool:
        return runc.copy_status(container) == HELD

    def check(self, runc: Runc, container: str, status: dict) -> None:
        _check_held_copy(runc, container, status)

    def apply(self, runc: Runc, container: str, status: dict) -> str:
        for pid in runc.processes(container):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        return ReceiverPhase.RELEASED.value


class DeleteDestination(Step):
    def needed(self, runc: Runc, container: str, status: dict) -> bool:
        return runc.status(container) != "absent"

    def check(self, runc: Runc, container: str, status: dict) -> None:
        _check_held_copy(runc, container, status)

    def apply(self, runc: Runc, container: str, status: dict) -> str:
        runc.run("delete the destination's held copy", "delete", "--force", container)
        if runc.status(container) != "absent":
            raise CommandError(f"runc delete --force left container {container} behind", step="delete the destination's held copy")
        return ReceiverPhase.ABORTED.value


STEPS = {("sender", "resume"): ResumeSource(), ("sender", "delete"): DeleteSource(),
         ("receiver", "release"): ReleaseDestination(), ("receiver", "delete"): DeleteDestination()}


def _check_held_copy(runc: Runc, container: str, status: dict) -> None:
    """The container here must be a copy this migration restored and held: its receiver got as far as the restore
    (the ID was checked free before), and every task of it is stopped (it never ran)."""
    if status["phase"] not in HELD_PHASES:
        raise InputError(f"the receiver ended {status['phase']}: the copy here is not one it holds", step="resolve")
    if runc.copy_status(container) != HELD:
        raise InputError(f"container {container} here is not held (it runs or ran): it is not a held copy of this migration", step="resolve")


def _session_runs(session: int | None) -> bool:
    """Whether the session's leader still runs (a zombie no longer serves anything)."""
    return bool(session) and task_state(session) not in ("gone", "Z")


def _kill_session(session: int | None) -> None:
    if _session_runs(session):
        try:
            os.killpg(session, signal.SIGKILL)
        except ProcessLookupError:
            pass
