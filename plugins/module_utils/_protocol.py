# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration protocol in one place: its messages, each side's phases and transitions, and the rule that settles
a migration whose two sides lost each other.

The hand-over is a transaction with one commit point (after libvirt's migration protocol v3):

    sender (source host)                               receiver (destination host)
    PREPARING          Prepare ------------------->    PREPARED: ID free, same bundle, CPU, share checked
                       <---------------- Prepared      (whether it checks the final images)
    COPYING_BUNDLE     sync ...  ----------------->    (bundle tree, bundle_sync=copy)
    PRECOPY            PageServer / Fetch -------->    (each pre-dump round; Fetch: read back and hashed)
    FROZEN             runc pause; final dump (post-copy: lazy dump, then runc pause again: the fence)
    RESTORE_REQUESTED  Restore ------------------->    RESTORING, then HELD: restored, every task stopped
                       <-------------------- Held      before its first instruction; the images it read hashed
                       (compares the two manifests)    meanwhile, while the sender hashes its own
    COMMITTED          recorded first, then Commit ->  RELEASED: the tasks run
                       <---------------- Released
    TRANSFERRING       (post-copy)  <-- LazyProgress   TRANSFERRING: pages still come from the source
                                    <------ LazyDone
    DONE               runc delete; Finish -------->   DONE

Before COMMITTED the source's copy is the container: it is frozen, never deleted, and any failure resumes it; the
destination's copy, if there is one, is held and never runs. From COMMITTED on the destination's copy is the
container: nothing resumes the source (in post-copy its cgroup stays frozen even if its CRIU dies). A side that
loses the other in between neither guesses nor runs a second copy: it asks the decision record on the shared
directory, or the peer again (a new connection), else it stops in IN_DOUBT with its copy frozen or held, and
resolve() tells the controller, from what both hosts show, which copy is the container.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, Callable, ClassVar, Mapping, Sequence

from ansible_collections.ferry.runc.plugins.module_utils._channel import Channel, ChannelError, PeerFailed
from ansible_collections.ferry.runc.plugins.module_utils._strategy import streams_pages


def page_stream(transport: str, strategies: Sequence[str], tls: bool) -> str:
    """How memory pages cross the link with any of these strategies (the migration's, and those auto may switch to):
    none (they go through the shared directory), tls or plaintext."""
    if not streams_pages(transport, strategies):
        return "none"
    return "tls" if tls else "plaintext"


def plaintext_problem(stream: str, allowed: bool) -> str | None:
    """Why a page stream may not go as planned: without TLS anyone on the link can read the pages and, since the
    page server takes the first connection, feed the destination its own."""
    if stream == "plaintext" and not allowed:
        return ("CRIU's page stream needs TLS (tls_cacert, tls_cert, tls_key); to send memory pages unencrypted and"
                " unauthenticated anyway, set page_stream_plaintext")
    return None


# -- messages ------------------------------------------------------------------------------------------------------


@dataclass
class Message:
    """A typed message; KIND names it on the wire, its fields are its JSON payload."""

    KIND: ClassVar[str] = ""


@dataclass
class Prepare(Message):
    KIND: ClassVar[str] = "prepare"
    container: str
    strategy: str
    transport: str
    bundle_sync: str
    bundle_config_digest: str
    cpuinfo: str
    share_token: str | None
    criu_options: dict
    bind_sources: list
    # How CRIU's memory pages cross the link: "tls", "plaintext" (both agents opted in), or "none" (they do not).
    page_stream: str


@dataclass
class PageServer(Message):
    KIND: ClassVar[str] = "page_server"
    dir: str
    parent: str | None


@dataclass
class Fetch(Message):
    """Read back a pre-dump round's images of dir on the shared directory, while the container runs: the receiver
    hashes its copy of each file named in sizes (name to bytes), the sender its own meanwhile, and the sender compares
    the two manifests."""

    KIND: ClassVar[str] = "fetch"
    dir: str
    sizes: dict


@dataclass
class Restore(Message):
    """Restore the images of dir held, hashing each file named in sizes (name to bytes; none when the images go
    unchecked) as the restore reads it; the sender hashes its own meanwhile and compares the two manifests."""

    KIND: ClassVar[str] = "restore"
    dir: str
    sizes: dict
    lazy: dict | None


@dataclass
class Commit(Message):
    KIND: ClassVar[str] = "commit"


@dataclass
class Abort(Message):
    KIND: ClassVar[str] = "abort"
    reason: str


@dataclass
class Finish(Message):
    KIND: ClassVar[str] = "finish"
    keep_images: bool


@dataclass
class Status(Message):
    """After a reconnection: where are you?"""

    KIND: ClassVar[str] = "status"


@dataclass
class Done(Message):
    KIND: ClassVar[str] = "ok"


@dataclass
class Prepared(Message):
    KIND: ClassVar[str] = "prepared"
    # Whether the receiver checks the final images as it restores them (its verify_images).
    verify_images: bool


@dataclass
class PageServerReady(Message):
    KIND: ClassVar[str] = "page_server_ready"
    address: str
    port: int


@dataclass
class Fetched(Message):
    KIND: ClassVar[str] = "fetched"
    manifest: dict
    size: int
    seconds: float


@dataclass
class Held(Message):
    KIND: ClassVar[str] = "held"
    restore: dict
    # The digests of the images the restore read (empty when unchecked) and how long hashing them took.
    manifest: dict
    check_seconds: float | None


@dataclass
class Released(Message):
    KIND: ClassVar[str] = "released"
    seconds: float


@dataclass
class LazyDone(Message):
    KIND: ClassVar[str] = "lazy_done"
    ok: bool
    seconds: float
    error: str = ""
    log: list = field(default_factory=list)


@dataclass
class LazyProgress(Message):
    """Post-copy, every few seconds until LazyDone: the memory the destination's copy holds so far."""

    KIND: ClassVar[str] = "lazy_progress"
    local_bytes: int | None
    seconds: float


@dataclass
class StatusReport(Message):
    KIND: ClassVar[str] = "status_report"
    phase: str


MESSAGES = {kind.KIND: kind for kind in (Prepare, PageServer, Fetch, Restore, Commit, Abort, Finish, Status, Done,
                                         Prepared, PageServerReady, Fetched, Held, Released, LazyDone, LazyProgress,
                                         StatusReport)}
# The sender's requests the receiver serves (tree sync's own "sync" stream aside), and what each is answered with.
REQUESTS = (Prepare, PageServer, Fetch, Restore, Commit, Abort, Finish, Status)


def send(channel: Channel, message: Message) -> None:
    channel.send(message.KIND, **asdict(message))


def decode(payload: Mapping[str, Any]) -> Message:
    """The typed message of a received payload; a payload that is not one of MESSAGES is the peer's fault."""
    kind = MESSAGES.get(payload.get("type"))
    if kind is None:
        raise ChannelError(f"unknown message {payload.get('type')!r}")
    names = {item.name for item in fields(kind)}
    missing = names - set(payload)
    if missing:
        raise ChannelError(f"message {kind.KIND} lacks {', '.join(sorted(missing))}")
    return kind(**{name: payload[name] for name in names})


def receive(channel: Channel, *expected: type) -> Message:
    """The next message, which must be one of expected; a 'failed' answer raises PeerFailed with its cause."""
    payload = channel.recv()
    if payload.get("type") == "failed":
        raise PeerFailed(str(payload.get("error")), payload.get("log") or [])
    message = decode(payload)
    if expected and not isinstance(message, expected):
        names = " or ".join(kind.KIND for kind in expected)
        raise ChannelError(f"expected {names} from the {channel.peer_role}, got {message.KIND}")
    return message


def request(channel: Channel, message: Message, answer: type) -> Any:
    send(channel, message)
    return receive(channel, answer)


def answer_failed(channel: Channel, error: str, log: list[str]) -> None:
    channel.send("failed", error=error, log=log)


# -- phases --------------------------------------------------------------------------------------------------------


class SenderPhase(str, Enum):
    PREPARING = "preparing"
    COPYING_BUNDLE = "copying the bundle"
    PRECOPY = "pre-copy"
    FROZEN = "frozen"
    RESTORE_REQUESTED = "restore requested"
    COMMITTED = "committed"
    RELEASED = "released"
    TRANSFERRING = "transferring pages"
    # Ends.
    DONE = "done"
    ROLLED_BACK = "rolled back"
    IN_DOUBT = "in doubt"
    LOST_AFTER_COMMIT = "destination copy lost after the commit"


class ReceiverPhase(str, Enum):
    LISTENING = "listening"
    PREPARED = "prepared"
    RESTORING = "restoring"
    HELD = "held"
    RELEASED = "released"
    TRANSFERRING = "transferring pages"
    # Ends.
    DONE = "done"
    ABORTED = "aborted"
    IN_DOUBT = "in doubt"
    COPY_LOST = "copy lost"


S, R = SenderPhase, ReceiverPhase
SENDER_TRANSITIONS = {
    S.PREPARING: {S.COPYING_BUNDLE, S.PRECOPY, S.FROZEN, S.ROLLED_BACK},
    S.COPYING_BUNDLE: {S.PRECOPY, S.FROZEN, S.ROLLED_BACK},
    S.PRECOPY: {S.FROZEN, S.ROLLED_BACK},
    S.FROZEN: {S.RESTORE_REQUESTED, S.ROLLED_BACK},
    S.RESTORE_REQUESTED: {S.COMMITTED, S.ROLLED_BACK},
    S.COMMITTED: {S.RELEASED, S.IN_DOUBT},
    S.RELEASED: {S.TRANSFERRING, S.DONE, S.IN_DOUBT},
    S.TRANSFERRING: {S.DONE, S.LOST_AFTER_COMMIT, S.IN_DOUBT},
    S.IN_DOUBT: {S.RELEASED, S.DONE, S.ROLLED_BACK},
}
RECEIVER_TRANSITIONS = {
    R.LISTENING: {R.PREPARED, R.ABORTED},
    R.PREPARED: {R.RESTORING, R.ABORTED},
    R.RESTORING: {R.HELD, R.PREPARED, R.ABORTED},
    R.HELD: {R.RELEASED, R.ABORTED, R.IN_DOUBT},
    R.RELEASED: {R.TRANSFERRING, R.DONE},
    R.TRANSFERRING: {R.DONE, R.COPY_LOST},
    R.IN_DOUBT: {R.RELEASED, R.ABORTED},
}
# Where each side's agent stops (IN_DOUBT too, though the controller or a later run may settle it).
SENDER_ENDS = frozenset({S.DONE, S.ROLLED_BACK, S.IN_DOUBT, S.LOST_AFTER_COMMIT})
RECEIVER_ENDS = frozenset({R.DONE, R.ABORTED, R.COPY_LOST})
# Before the commit the source's copy is the container; these are the phases in which it may still be resumed.
SOURCE_IS_THE_CONTAINER = frozenset({S.PREPARING, S.COPYING_BUNDLE, S.PRECOPY, S.FROZEN, S.RESTORE_REQUESTED, S.ROLLED_BACK})


# A receiver only ever releases its copy after the commit.
RELEASED_PHASES = frozenset({R.RELEASED.value, R.TRANSFERRING.value, R.DONE.value})


class Machine:
    """One side's phase: moves only along its transition table, and reports every move (the status file)."""

    def __init__(self, first: Enum, transitions: Mapping[Enum, set], on_change: Callable[[Enum], None]) -> None:
        self.phase = first
        self.transitions = transitions
        self.on_change = on_change
        self.history: list[dict[str, Any]] = [{"phase": first.value, "at": time.time()}]

    def to(self, phase: Enum) -> None:
        if phase not in self.transitions.get(self.phase, ()):
            raise RuntimeError(f"protocol error: {self.phase.value} -> {phase.value} is not a transition")
        self.phase = phase
        self.history.append({"phase": phase.value, "at": time.time()})
        self.on_change(phase)


# -- settling a migration whose sides lost each other ------------------------------------------------------------------


@dataclass
class Resolution:
    """What the controller does on each host, and why: source_action in (none, resume, delete), destination_action in
    (none, release, delete); outcome: migrated, rolled back, in doubt (nothing is done then), or two copies."""

    outcome: str
    why: str
    source_action: str = "none"
    destination_action: str = "none"


def resolve(sender_phase: str | None, source_status: str, receiver_phase: str | None, destination_status: str) -> Resolution:
    """Which copy is the container, from the sender's last recorded phase (None: no sender record), the source's runc
    status, the receiver's last recorded phase and the destination's status (runc's, absent when runc knows no such
    container, or held: every task of it stopped, as a restore left it).

    A held destination copy has never run, so it yields to a source copy that was not committed; a committed
    migration's destination copy wins; a source copy is resumed only while it still is the container."""
    committed = (sender_phase is not None and S(sender_phase) not in SOURCE_IS_THE_CONTAINER) or receiver_phase in RELEASED_PHASES
    ours_to_resume = sender_phase is not None and not committed
    source_present = source_status in ("running", "paused")
    held = destination_status == "held"
    destination_runs = destination_status in ("running", "paused")
    if source_status == "running" and (destination_runs or (held and committed)):
        return Resolution("two copies", "the source runs the container although the destination has a committed or"
                          " running copy: stop one by hand (this should never happen)")
    if held and (committed or not source_present):
        return Resolution("migrated", "the migration was committed (or the source's copy is gone): the held copy runs",
                          source_action="delete" if source_present else "none", destination_action="release")
    if held:
        return Resolution("rolled back", "the migration was not committed: the held copy never ran and goes",
                          source_action="resume" if source_status == "paused" and ours_to_resume else "none",
                          destination_action="delete")
    if destination_runs and committed:
        return Resolution("migrated", "the destination runs the container", source_action="delete" if source_present else "none")
    if destination_runs:
        return Resolution("in doubt", "the destination runs a container of this name that this migration never released")
    if source_status == "running":
        return Resolution("rolled back", "the source runs the container")
    if source_status == "paused" and ours_to_resume:
        return Resolution("rolled back", "the migration was not committed: the frozen source copy resumes", source_action="resume")
    if source_status == "paused":
        return Resolution(
            "in doubt",
            "the migration was committed but the destination has no copy (its host restarted, or its copy failed after"
            " it ran): the source's copy is frozen at the moment of the freeze; resuming it loses whatever the"
            " destination's copy did",
        )
    return Resolution("lost", "neither host has the container; its images are kept")
