"""A sender's end and its guardian: the sender freezes nothing before its guardian runs (_sender), and the controller
(_settle, as migration_status reads it) counts a sender that died as ended only once its guardian recorded how, or
when no guardian is left to."""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.ferry.runc.plugins.module_utils import _sender
from ansible_collections.ferry.runc.plugins.module_utils._agent import write_json
from ansible_collections.ferry.runc.plugins.module_utils._commands import own_identity
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError
from ansible_collections.ferry.runc.plugins.module_utils._settle import _ended, _read, _summary

# A process that no longer runs: this pid with a start time it never had.
DEAD = {"pid": os.getpid(), "start_time": -1}
SENDER_DIED_FROZEN = {"agent": DEAD, "finished": False, "phase": "frozen"}


def seen(sender, guardian_path, tmp_path):
    """What the controller sees of a sender's status: ended, finished, died."""
    sender_path = str(tmp_path / "sender.json")
    write_json(sender_path, sender)
    status, guarded = _read(sender_path, guardian_path)
    summary = _summary(status, guarded=guarded)
    return _ended(status, guarded), summary["finished"], summary["died"]


def test_a_dead_sender_has_not_ended_while_its_guardian_runs(tmp_path):
    guardian_path = str(tmp_path / "guardian.json")
    write_json(guardian_path, {"agent": own_identity(), "finished": False})
    assert seen(SENDER_DIED_FROZEN, guardian_path, tmp_path) == (False, False, False)


def test_a_dead_sender_whose_guardian_recorded_its_end_has_ended_with_the_guardians_account(tmp_path):
    guardian_path = str(tmp_path / "guardian.json")
    write_json(guardian_path, {"agent": own_identity(), "finished": True})
    recorded = dict(SENDER_DIED_FROZEN, phase="rolled-back", finished=True, died=True,
                    result={"error": "the sender agent died while frozen"})
    assert seen(recorded, guardian_path, tmp_path) == (True, True, True)
    assert _summary(recorded)["result"]["error"] == "the sender agent died while frozen"


def test_a_dead_sender_with_a_dead_guardian_or_none_has_ended(tmp_path):
    guardian_path = str(tmp_path / "guardian.json")
    assert seen(SENDER_DIED_FROZEN, guardian_path, tmp_path) == (True, True, True)
    write_json(guardian_path, {"agent": DEAD, "finished": False})
    assert seen(SENDER_DIED_FROZEN, guardian_path, tmp_path) == (True, True, True)
    assert seen(SENDER_DIED_FROZEN, None, tmp_path) == (True, True, True)


def test_a_live_sender_has_not_ended(tmp_path):
    assert seen({"agent": own_identity(), "finished": False}, str(tmp_path / "guardian.json"), tmp_path) == (False, False, False)


def test_the_sender_waits_for_its_guardian_to_record_itself(tmp_path):
    guardian_path = str(tmp_path / "guardian.json")
    recorder = threading.Timer(0.3, write_json, (guardian_path, {"agent": own_identity(), "finished": False}))
    recorder.start()
    _sender.Sender._await_guardian(guardian_path)
    assert os.path.exists(guardian_path)


def test_a_guardian_that_does_not_start_fails_the_sender_before_the_freeze(tmp_path, monkeypatch):
    monkeypatch.setattr(_sender, "GUARDIAN_START_WAIT", 0.2)
    guardian_path = str(tmp_path / "guardian.json")
    write_json(guardian_path, {"agent": DEAD, "finished": False})
    with pytest.raises(CommandError, match="the guardian did not start within 0.2 s") as raised:
        _sender.Sender._await_guardian(guardian_path)
    assert raised.value.step == "starting the guardian"
