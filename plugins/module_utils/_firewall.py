# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRIU's page servers take the first connection that comes, from anyone on the link: while an agent runs one
(the receiver's for each dump, the sender's lazy dump in post-copy), its port accepts only the peer's address.

Each rule carries a comment naming the migration and the agent that added it; an agent that adds a rule first drops
those of agents that are gone (a rule left by a killed agent would refuse a later migration's peer on that port).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils._commands import alive, binary, own_identity
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError, FerryError

STEP = "limiting the page server to the peer"
COMMENT = "ferry.runc {migration} owner {pid} {start_time}"
OWNER_COMMENT = re.compile(r"ferry\.runc .+ owner (?P<pid>\d+) (?P<start_time>\d+)")
# A word of iptables -S: bare, or in double quotes with ", \ and ' escaped by a backslash.
LISTED_WORD = re.compile(r'"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>\S+)')


def rule(port: int, peer: str, comment: str) -> list[str]:
    """The rule's arguments after -I/-D INPUT: TCP to port from anywhere but peer is reset."""
    return ["-p", "tcp", "--dport", str(port), "!", "-s", peer, "-m", "comment", "--comment", comment,
            "-j", "REJECT", "--reject-with", "tcp-reset"]


def tool(peer: str) -> str:
    return "ip6tables" if ":" in peer else "iptables"


@contextlib.contextmanager
def peer_only(runner: Any, migration: str, port: int, peer: str) -> Iterator[None]:
    """While the block runs, port on this host accepts TCP connections from peer only."""
    try:
        path = binary(runner, tool(peer))
    except FerryError as exc:
        raise exc.at(STEP)
    drop_stale(runner, path)
    arguments = rule(port, peer, COMMENT.format(migration=migration, **own_identity()))
    rc, out, err = runner.run_command([path, "-w", "-I", "INPUT", *arguments], check_rc=False)
    if rc != 0:
        raise CommandError(f"{tool(peer)} could not limit port {port} to {peer}: {(err or out).strip()}", step=STEP)
    try:
        yield
    finally:
        # A rule that stays (the deletion failed) is dropped by the next agent here: this one is gone by then.
        runner.run_command([path, "-w", "-D", "INPUT", *arguments], check_rc=False)


def drop_stale(runner: Any, path: str) -> None:
    """Delete the INPUT rules of agents that are gone; a rule is deleted by the arguments iptables -S lists it with."""
    rc, out, _err = runner.run_command([path, "-w", "-S", "INPUT"], check_rc=False)
    if rc != 0:
        return
    for line in out.splitlines():
        words = _listed_words(line)
        if words[:2] == ["-A", "INPUT"] and _is_stale(words):
            runner.run_command([path, "-w", "-D", *words[1:]], check_rc=False)


def _listed_words(line: str) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", word["quoted"]) if word["quoted"] is not None else word["bare"]
            for word in LISTED_WORD.finditer(line)]


def _is_stale(words: list[str]) -> bool:
    if "--comment" not in words[:-1]:
        return False
    owner = OWNER_COMMENT.fullmatch(words[words.index("--comment") + 1])
    return bool(owner) and not alive({"pid": int(owner["pid"]), "start_time": int(owner["start_time"])})
