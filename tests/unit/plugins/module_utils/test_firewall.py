"""_firewall: the rule that limits a page server's port to the peer (ip6tables for an IPv6 peer), its failures, and the
rules of dead agents dropped by what iptables -S lists (its output as iptables 1.8.9 writes it)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CommandMock

from ansible_collections.ferry.runc.plugins.module_utils._commands import own_identity
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, InputError
from ansible_collections.ferry.runc.plugins.module_utils._firewall import drop_stale, peer_only

OWN = own_identity()
OWN_COMMENT = f"ferry.runc m1 owner {OWN['pid']} {OWN['start_time']}"
# No process has this pid: the kernel's largest is 2 ** 22.
DEAD_COMMENT = "ferry.runc m0 owner 4194305 1"
EMPTY_CHAIN = "-P INPUT ACCEPT\n"


class Runner:
    """A runner (see _commands) that answers the expected commands in order, with iptables and ip6tables in /usr/sbin
    unless told otherwise."""

    def __init__(self, commands: list[dict[str, Any]], installed: tuple[str, ...] = ("iptables", "ip6tables")) -> None:
        self.commands = CommandMock(commands)
        self.installed = installed

    def run_command(self, args: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        return self.commands(self, args)

    def get_bin_path(self, name: str, required: bool = False) -> str | None:
        return f"/usr/sbin/{name}" if name in self.installed else None


def rule(port: int, peer: str) -> list[str]:
    return ["-p", "tcp", "--dport", str(port), "!", "-s", peer, "-m", "comment", "--comment", OWN_COMMENT,
            "-j", "REJECT", "--reject-with", "tcp-reset"]


@pytest.mark.parametrize(("peer", "tool"), [("10.99.0.1", "iptables"), ("fd00:99::1", "ip6tables")])
def test_the_port_accepts_only_the_peer_while_the_block_runs(peer: str, tool: str):
    binary = f"/usr/sbin/{tool}"
    runner = Runner([
        {"argv": [binary, "-w", "-S", "INPUT"], "out": EMPTY_CHAIN},
        {"argv": [binary, "-w", "-I", "INPUT", *rule(27101, peer)]},
        {"argv": [binary, "-w", "-D", "INPUT", *rule(27101, peer)]},
    ])
    with peer_only(runner, "m1", 27101, peer):
        assert len(runner.commands.calls) == 2
    assert not runner.commands.expected


def test_the_rule_comes_out_when_the_block_fails():
    runner = Runner([
        {"argv": ["/usr/sbin/iptables", "-w", "-S", "INPUT"], "out": EMPTY_CHAIN},
        {"argv": ["/usr/sbin/iptables", "-w", "-I", "INPUT", *rule(27102, "10.99.0.2")]},
        {"argv": ["/usr/sbin/iptables", "-w", "-D", "INPUT", *rule(27102, "10.99.0.2")]},
    ])
    with pytest.raises(RuntimeError):
        with peer_only(runner, "m1", 27102, "10.99.0.2"):
            raise RuntimeError("the dump failed")
    assert not runner.commands.expected


def test_a_rule_that_cannot_go_in_fails_naming_the_step_and_the_block_never_runs():
    runner = Runner([
        {"argv": ["/usr/sbin/iptables", "-w", "-S", "INPUT"], "out": EMPTY_CHAIN},
        {"argv": ["/usr/sbin/iptables", "-w", "-I", "INPUT", *rule(27101, "10.99.0.1")], "rc": 4,
         "err": "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n"},
    ])
    with pytest.raises(CommandError) as error:
        with peer_only(runner, "m1", 27101, "10.99.0.1"):
            pytest.fail("the block ran without its rule")
    assert error.value.step == "limiting the page server to the peer"
    assert error.value.cause == ("iptables could not limit port 27101 to 10.99.0.1: iptables v1.8.9 (nf_tables): Could not"
                                 " fetch rule set generation id: Permission denied (you must be root)")
    assert not runner.commands.expected


def test_a_host_without_iptables_refuses_naming_the_step():
    runner = Runner([], installed=("iptables",))
    with pytest.raises(InputError) as error:
        with peer_only(runner, "m1", 27101, "fd00:99::1"):
            pytest.fail("the block ran without its rule")
    assert error.value.step == "limiting the page server to the peer"
    assert error.value.cause == "ip6tables is not installed (not found in PATH)"


# iptables -S INPUT on a host with: a rule of a dead agent (an odd migration id shows the escapes), the running
# agent's own, a dead agent's whose comment only starts like ours, and two rules of someone else's.
LISTED = f"""\
-P INPUT ACCEPT
-A INPUT ! -s 10.99.0.1/32 -p tcp -m tcp --dport 27101 -m comment --comment "{DEAD_COMMENT}" -j REJECT --reject-with tcp-reset
-A INPUT ! -s 10.99.0.1/32 -p tcp -m tcp --dport 27105 -m comment --comment "{OWN_COMMENT}" -j REJECT --reject-with tcp-reset
-A INPUT ! -s 10.99.0.9/32 -p tcp -m tcp --dport 9 -m comment --comment "ferry.runc it\\'s \\"odd\\" \\\\ id owner 4194305 1" -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m tcp --dport 8 -m comment --comment "ferry.runc m2 owner 4194305 1 (copied by hand)" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "someone else\\'s" -j ACCEPT
-A INPUT -i eth1 -j DROP
"""


def test_the_rules_of_dead_agents_are_deleted_as_listed_and_every_other_rule_stays():
    deleted = ["/usr/sbin/iptables", "-w", "-D", "INPUT"]
    runner = Runner([
        {"argv": ["/usr/sbin/iptables", "-w", "-S", "INPUT"], "out": LISTED},
        {"argv": [*deleted, "!", "-s", "10.99.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", "27101", "-m", "comment",
                  "--comment", DEAD_COMMENT, "-j", "REJECT", "--reject-with", "tcp-reset"]},
        {"argv": [*deleted, "!", "-s", "10.99.0.9/32", "-p", "tcp", "-m", "tcp", "--dport", "9", "-m", "comment",
                  "--comment", "ferry.runc it's \"odd\" \\ id owner 4194305 1", "-j", "REJECT", "--reject-with", "tcp-reset"]},
    ])
    drop_stale(runner, "/usr/sbin/iptables")
    assert not runner.commands.expected


def test_a_chain_that_cannot_be_listed_drops_nothing():
    runner = Runner([{"argv": ["/usr/sbin/iptables", "-w", "-S", "INPUT"], "rc": 1, "err": "iptables: No chain/target/match by that name.\n"}])
    drop_stale(runner, "/usr/sbin/iptables")
    assert not runner.commands.expected
