"""tests/failure_excerpt.py: which failures of an Ansible log it prints again for CI's short view."""

from __future__ import annotations

import importlib.util
import pathlib

EXCERPT_PY = pathlib.Path(__file__).resolve().parents[2] / "failure_excerpt.py"


def load_failure_excerpt():
    spec = importlib.util.spec_from_file_location("ferry_failure_excerpt", EXCERPT_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


failure_excerpt = load_failure_excerpt()

RECAP_SRC_FAILED = """
PLAY RECAP *********************************************************************
dst                        : ok=4    changed=0    unreachable=0    failed=0    skipped=0    rescued=1    ignored=1
src                        : ok=9    changed=2    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0

"""

LOG_WITH_IGNORED_RESCUED_AND_ENDING_FAILURES = """
PLAY [Converge] ****************************************************************

TASK [Probe a port that is closed] *********************************************
fatal: [dst]: FAILED! => {"changed": false, "msg": "refused"}
...ignoring

TASK [Delete a container that may not exist] ***********************************
fatal: [dst]: FAILED! => {"changed": false, "msg": "rescued later"}

TASK [Pre-dump the counter] ****************************************************
fatal: [src]: FAILED! => {"changed": false, "msg": "an earlier failure of src, rescued"}

TASK [Read the counter in /var/lib/ferry-test/checkpoint/counter] **************
FAILED - RETRYING: [src]: Read the counter in /var/lib/ferry-test/checkpoint/counter (60 retries left).
fatal: [src]: FAILED! => {"attempts": 60, "changed": false, "rc": 1, "stdout": ""}
""" + RECAP_SRC_FAILED


def test_prints_the_last_failure_of_each_host_the_recap_counts():
    assert failure_excerpt.excerpt(LOG_WITH_IGNORED_RESCUED_AND_ENDING_FAILURES) == [
        "TASK [Read the counter in /var/lib/ferry-test/checkpoint/counter]",
        'fatal: [src]: FAILED! => {"attempts": 60, "changed": false, "rc": 1, "stdout": ""}',
    ]


def test_prints_nothing_when_every_play_passed():
    passed_log = LOG_WITH_IGNORED_RESCUED_AND_ENDING_FAILURES.replace("failed=1", "failed=0")
    assert failure_excerpt.excerpt(passed_log) == []


def test_each_playbook_run_that_failed_is_printed():
    earlier_run = "TASK [Fail on src] ***\nfatal: [src]: FAILED! => {\"msg\": \"old\"}\n" + RECAP_SRC_FAILED
    later_run = "TASK [Fail on src] ***\nfatal: [src]: FAILED! => {\"msg\": \"new\"}\n" + RECAP_SRC_FAILED
    assert failure_excerpt.excerpt(earlier_run + later_run) == [
        "TASK [Fail on src]",
        'fatal: [src]: FAILED! => {"msg": "old"}',
        "TASK [Fail on src]",
        'fatal: [src]: FAILED! => {"msg": "new"}',
    ]


def test_loop_failures_unreachable_hosts_and_colours():
    log = (
        "\x1b[0;32mTASK [Remove the containers] ***\x1b[0m\n"
        "\x1b[0;31mfailed: [src] (item=ferry-a) => {\"msg\": \"busy\"}\x1b[0m\n"
        "TASK [Ping dst] ***\n"
        "fatal: [dst]: UNREACHABLE! => {\"msg\": \"timed out\"}\n"
        "\nPLAY RECAP ***\n"
        "dst : ok=1 changed=0 unreachable=1 failed=0 skipped=0 rescued=0 ignored=0\n"
        "src : ok=1 changed=0 unreachable=0 failed=1 skipped=0 rescued=0 ignored=0\n"
    )
    assert failure_excerpt.excerpt(log) == [
        "TASK [Ping dst]",
        'fatal: [dst]: UNREACHABLE! => {"msg": "timed out"}',
        "TASK [Remove the containers]",
        'failed: [src] (item=ferry-a) => {"msg": "busy"}',
    ]


MOLECULE_BOXED_LOG = """\
  \x1b[2m\u2502\x1b[0m TASK [Read the counter in /var/lib/ferry-test/checkpoint/counter]
  \x1b[2m\u2502\x1b[0m   *************************************************
  \x1b[2m\u2502\x1b[0m \x1b[0;31mfatal: [src]: FAILED! => {"attempts": 60, "changed": false, "rc": 1,\x1b[0m
  \x1b[2m\u2502\x1b[0m \x1b[0;31m  "stdout": ""}\x1b[0m
  \x1b[2m\u2502\x1b[0m
  \x1b[2m\u2502\x1b[0m PLAY RECAP
  \x1b[2m\u2502\x1b[0m   *********************************************************************
  \x1b[2m\u2502\x1b[0m src                        : ok=9    changed=2    unreachable=0    failed=1
  \x1b[2m\u2502\x1b[0m   skipped=0    rescued=0    ignored=0
  \x1b[2m\u2502\x1b[0m
  \u2514\u2500 Return code: 2 \u2500\u2500\u2500
"""


def test_molecule_boxed_and_wrapped_output():
    assert failure_excerpt.excerpt(MOLECULE_BOXED_LOG) == [
        "TASK [Read the counter in /var/lib/ferry-test/checkpoint/counter]",
        'fatal: [src]: FAILED! => {"attempts": 60, "changed": false, "rc": 1, "stdout": ""}',
    ]


def test_long_messages_are_cut():
    long_message = "x" * 2000
    log = "TASK [Dump] ***\nfatal: [src]: FAILED! => {\"msg\": \"" + long_message + "\"}\n" + RECAP_SRC_FAILED
    failure_line = failure_excerpt.excerpt(log)[1]
    assert failure_line.endswith(" [...]")
    assert len(failure_line) == failure_excerpt.MAX_LINE_CHARS + len(" [...]")


def test_main_prints_a_heading_and_the_excerpt(tmp_path, capsys):
    log_path = tmp_path / "molecule.log"
    log_path.write_text(LOG_WITH_IGNORED_RESCUED_AND_ENDING_FAILURES, encoding="utf-8")
    failure_excerpt.main(str(log_path))
    assert capsys.readouterr().out.splitlines() == [
        "=== the Ansible failures that ended plays in " + str(log_path) + ":",
        "TASK [Read the counter in /var/lib/ferry-test/checkpoint/counter]",
        'fatal: [src]: FAILED! => {"attempts": 60, "changed": false, "rc": 1, "stdout": ""}',
    ]
