"""The control channel (_channel): real TCP connections on 127.0.0.1 between connect() and accept().

Attacks on the wire go through FrameProxy, a relay that knows the frame layout (length | MAC | payload after
a plain challenge frame each way) and lets a test change, repeat, reorder or swap frames.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import statistics
import struct
import threading
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional

import pytest
from conftest import Background

from ansible_collections.ferry.runc.plugins.module_utils._channel import (
    MAX_FRAME,
    Channel,
    ChannelError,
    PeerFailed,
    accept,
    connect,
)

SECRET = "correct horse battery staple"
IO_TIMEOUT = 5.0
HEADER = struct.Struct("!I")
MAC_SIZE = 32

Mangle = Callable[[int, str, int, bytes], List[bytes]]


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_plain_frame(sock: socket.socket) -> bytes:
    header = read_exactly(sock, HEADER.size)
    return header + read_exactly(sock, HEADER.unpack(header)[0])


def read_mac_frame(sock: socket.socket) -> bytes:
    header = read_exactly(sock, HEADER.size)
    return header + read_exactly(sock, MAC_SIZE + HEADER.unpack(header)[0])


def auth_answer(secret: str, nonce: bytes) -> bytes:
    """What a sender that knows the secret answers to the receiver's challenge."""
    mac = hmac.new(secret.encode(), b"ferry.runc auth|" + nonce, hashlib.sha256).hexdigest().encode()
    return HEADER.pack(len(mac)) + mac


def payload_of(frame: bytes) -> bytes:
    return frame[HEADER.size + MAC_SIZE :]


class FrameProxy:
    """Relays connections to the receiver frame by frame; mangle(session, direction, index, frame) says what to forward.

    direction is "to_receiver" or "to_sender"; index counts the authenticated frames of one direction from 1
    (the receiver's first one is its welcome). Every frame seen is kept in frames[session][direction], the plain
    challenge frame (the receiver's nonce, the sender's answer) in challenges[session][direction]. With split
    set to a direction, that direction's challenge frame is delivered in three TCP segments.
    """

    def __init__(self, upstream_port: int, mangle: Optional[Mangle] = None, split: Optional[str] = None) -> None:
        self.upstream_port = upstream_port
        self.mangle: Mangle = mangle or (lambda session, direction, index, frame: [frame])
        self.split = split
        self.frames: Dict[int, Dict[str, List[bytes]]] = {}
        self.challenges: Dict[int, Dict[str, bytes]] = {}
        self.listener = listener()
        self.port = port_of(self.listener)
        self._sockets: List[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        session = 0
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            session += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            self.frames[session] = {"to_receiver": [], "to_sender": []}
            self.challenges[session] = {}
            threading.Thread(target=self._pump, args=(session, client, upstream, "to_receiver"), daemon=True).start()
            threading.Thread(target=self._pump, args=(session, upstream, client, "to_sender"), daemon=True).start()

    def _pump(self, session: int, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            challenge = read_plain_frame(source)
            self.challenges[session][direction] = challenge
            if self.split == direction:
                # Three TCP segments, as a slow or fragmenting link may deliver them.
                for piece in (challenge[:2], challenge[2:20], challenge[20:]):
                    sink.sendall(piece)
                    time.sleep(0.03)
            else:
                sink.sendall(challenge)
            index = 0
            while True:
                frame = read_mac_frame(source)
                index += 1
                self.frames[session][direction].append(frame)
                for out in self.mangle(session, direction, index, frame):
                    sink.sendall(out)
        except (OSError, EOFError):
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            sock.close()


def open_pair(secret: str = SECRET, proxy: Optional[Callable[[int], FrameProxy]] = None):
    """Connect a sender to a receiver (through a proxy when given); returns (sender, receiver, proxy)."""
    server = listener()
    accepting = Background(accept, server, secret, IO_TIMEOUT)
    relay = proxy(port_of(server)) if proxy else None
    try:
        sender = connect("127.0.0.1", relay.port if relay else port_of(server), secret, IO_TIMEOUT)
        receiver = accepting.result()
    finally:
        server.close()
    for channel in (sender, receiver):
        channel.settimeout(IO_TIMEOUT)
    return sender, receiver, relay


@pytest.fixture
def pair():
    sender, receiver, _relay = open_pair()
    yield sender, receiver
    sender.close()
    receiver.close()


@pytest.fixture
def proxied(request):
    """open_pair through a FrameProxy built with the given arguments; everything is closed afterwards."""
    opened = []

    def open_with(**proxy_args: Any):
        sender, receiver, relay = open_pair(proxy=partial(FrameProxy, **proxy_args))
        opened.append((sender, receiver, relay))
        return sender, receiver, relay

    yield open_with
    for sender, receiver, relay in opened:
        sender.close()
        receiver.close()
        relay.close()


# -- exchanging messages --------------------------------------------------------------------------------


def test_json_messages_travel_both_ways(pair):
    sender, receiver = pair
    sender.send("prepare", container="web1", rounds=[1, 2], nested={"a": None})
    assert receiver.recv("prepare") == {"type": "prepare", "container": "web1", "rounds": [1, 2], "nested": {"a": None}}
    receiver.send("ok", port=27101)
    assert sender.recv("ok", "failed") == {"type": "ok", "port": 27101}


@pytest.mark.parametrize(
    "payload", [b"", bytes(range(256)) * 3, b"x" * (1 << 20) + b"tail"], ids=["empty", "all-bytes", "1MiB+"]
)
def test_raw_frames_travel_both_ways(pair, payload):
    sender, receiver = pair
    sender.send_bytes(payload)
    assert receiver.recv_bytes() == payload
    receiver.send_bytes(payload[::-1])
    assert sender.recv_bytes() == payload[::-1]


def test_json_and_raw_frames_interleave_in_order(pair):
    sender, receiver = pair
    sender.send("sync", target="bundle")
    sender.send_bytes(b"chunk 1")
    sender.send_bytes(b'{"type": "eof"}')
    sender.send("eof", path="a")
    assert receiver.recv("sync")["target"] == "bundle"
    assert receiver.recv_bytes() == b"chunk 1"
    assert receiver.recv_bytes() == b'{"type": "eof"}'
    assert receiver.recv("eof") == {"type": "eof", "path": "a"}


def test_byte_counters_count_whole_frames(pair):
    sender, receiver = pair
    before_sent, before_received = sender.bytes_sent, receiver.bytes_received
    sender.send_bytes(b"12345")
    receiver.recv_bytes()
    assert sender.bytes_sent - before_sent == 4 + 32 + 5
    assert receiver.bytes_received - before_received == 4 + 32 + 5


def test_a_frame_of_exactly_max_size_passes(pair):
    sender, receiver = pair
    payload = b"\x5a" * MAX_FRAME
    sending = Background(sender.send_bytes, payload)
    assert receiver.recv_bytes() == payload
    sending.result()


def test_sending_a_frame_over_max_size_is_refused_locally(pair):
    sender, _receiver = pair
    with pytest.raises(ChannelError, match=f"frame of {MAX_FRAME + 1} bytes exceeds {MAX_FRAME}"):
        sender.send_bytes(b"x" * (MAX_FRAME + 1))


def test_recv_of_an_unexpected_kind_names_both(pair):
    sender, receiver = pair
    receiver.send("welcome")
    with pytest.raises(ChannelError, match="expected ok or failed from the receiver, got welcome") as caught:
        sender.recv("ok", "failed")
    assert not isinstance(caught.value, PeerFailed)


def test_recv_without_kinds_returns_a_failed_message_as_is(pair):
    sender, receiver = pair
    receiver.send("failed", error="boom")
    assert sender.recv() == {"type": "failed", "error": "boom"}


def test_a_raw_frame_read_as_json_is_a_malformed_message(pair):
    sender, receiver = pair
    sender.send_bytes(b"\xffnot json")
    with pytest.raises(ChannelError, match="the sender sent a malformed message"):
        receiver.recv()


def test_short_frames_in_a_row_are_not_held_back(pair):
    """An answer of two short frames ('want' then 'ok', as a sync pass with nothing to fetch sends) must not wait
    for the peer's delayed ACK (40 ms on Linux, Nagle's algorithm): the frozen window pays that on every exchange."""
    sender, receiver = pair
    rounds = 24

    def answer() -> None:
        for _round in range(rounds):
            receiver.recv("sync")
            receiver.send("want", paths=[])
            receiver.send("ok", bytes=0)

    answering = Background(answer)
    durations = []
    for _round in range(rounds):
        began = time.perf_counter()
        sender.send("sync", target="bundle")
        sender.recv("want")
        sender.recv("ok")
        durations.append(time.perf_counter() - began)
    answering.result()
    assert statistics.median(durations) < 0.02, f"median exchange took {statistics.median(durations) * 1000:.0f} ms"


# -- request / answer -----------------------------------------------------------------------------------


def answer_requests(receiver: Channel, count: int) -> List[Dict[str, Any]]:
    seen = []
    for _frame in range(count):
        message = receiver.recv()
        seen.append(message)
        if message["type"] == "fetch":
            receiver.send("ok", bytes=4096, seconds=0.5)
        elif message["type"] == "restore":
            receiver.send(
                "failed", error="criu restore failed", log=["Error (criu/cr-restore.c:1): boom", "Restoring FAILED."]
            )
        else:
            receiver.send("failed", error=f"unknown request {message['type']!r}")
    return seen


def test_request_returns_the_ok_payload(pair):
    sender, receiver = pair
    serving = Background(answer_requests, receiver, 1)
    assert sender.request("fetch", dir="pre1") == {"type": "ok", "bytes": 4096, "seconds": 0.5}
    assert serving.result() == [{"type": "fetch", "dir": "pre1"}]


def test_request_raises_peer_failed_with_the_log_lines(pair):
    sender, receiver = pair
    serving = Background(answer_requests, receiver, 1)
    with pytest.raises(PeerFailed, match="^criu restore failed$") as caught:
        sender.request("restore", dir="final")
    assert caught.value.log == ["Error (criu/cr-restore.c:1): boom", "Restoring FAILED."]
    assert isinstance(caught.value, ChannelError)
    serving.result()


def test_peer_failed_without_log_has_an_empty_log(pair):
    sender, receiver = pair
    serving = Background(answer_requests, receiver, 1)
    with pytest.raises(PeerFailed, match="unknown request 'dance'") as caught:
        sender.request("dance")
    assert caught.value.log == []
    serving.result()


def test_the_receiver_side_names_the_sender_in_peer_failed(pair):
    sender, receiver = pair
    sender.send("failed", error="dump failed", log=["a"])
    with pytest.raises(PeerFailed, match="^dump failed$") as caught:
        receiver.recv("ok")
    assert caught.value.log == ["a"]


# -- authentication -------------------------------------------------------------------------------------


def test_wrong_secret_is_rejected_and_the_listener_then_accepts_the_right_one():
    server = listener()
    accepting = Background(accept, server, SECRET, IO_TIMEOUT)
    try:
        with pytest.raises(ChannelError, match="secret") as caught:
            connect("127.0.0.1", port_of(server), "wrong secret", IO_TIMEOUT)
        assert f"127.0.0.1:{port_of(server)}" in str(caught.value)
        assert not accepting.done(0.2), "accept() gave up after a sender with the wrong secret"
        sender = connect("127.0.0.1", port_of(server), SECRET, IO_TIMEOUT)
        receiver = accepting.result()
    finally:
        server.close()
    sender.send("hello")
    assert receiver.recv("hello") == {"type": "hello"}
    receiver.send("ok")
    assert sender.recv("ok") == {"type": "ok"}
    sender.close()
    receiver.close()


def test_an_oversized_challenge_answer_is_dropped_and_the_listener_goes_on():
    server = listener()
    accepting = Background(accept, server, SECRET, IO_TIMEOUT)
    try:
        raw = socket.create_connection(("127.0.0.1", port_of(server)))
        raw.settimeout(IO_TIMEOUT)
        read_plain_frame(raw)
        raw.sendall(HEADER.pack(100_000) + b"a" * 1000)
        try:
            dropped = raw.recv(1) == b""
        except ConnectionResetError:  # closed with our bytes unread
            dropped = True
        assert dropped, "the receiver kept a connection that announced a 100 kB answer"
        raw.close()
        sender = connect("127.0.0.1", port_of(server), SECRET, IO_TIMEOUT)
        receiver = accepting.result()
    finally:
        server.close()
    sender.send("hello")
    assert receiver.recv("hello") == {"type": "hello"}
    sender.close()
    receiver.close()


def test_the_secret_never_crosses_the_wire():
    server = listener()
    accepting = Background(accept, server, SECRET, IO_TIMEOUT)
    relay = FrameProxy(port_of(server))
    try:
        sender = connect("127.0.0.1", relay.port, SECRET, IO_TIMEOUT)
        receiver = accepting.result()
        sender.send("hello")
        receiver.recv("hello")
    finally:
        server.close()
        relay.close()
    wire = b"".join(relay.frames[1]["to_receiver"] + relay.frames[1]["to_sender"])
    assert SECRET.encode() not in wire
    sender.close()
    receiver.close()


def test_a_receiver_without_the_secret_is_refused_by_the_sender():
    """A fake receiver can send a challenge, but not a welcome the sender believes."""
    fake = listener()
    connecting = Background(connect, "127.0.0.1", port_of(fake), SECRET, IO_TIMEOUT)
    conn, _address = fake.accept()
    conn.settimeout(IO_TIMEOUT)
    nonce = b"0" * 32
    conn.sendall(HEADER.pack(len(nonce)) + nonce)
    read_plain_frame(conn)
    welcome = json.dumps({"type": "welcome"}).encode()
    conn.sendall(HEADER.pack(len(welcome)) + b"\x00" * MAC_SIZE + welcome)
    with pytest.raises(ChannelError, match="authentication with the receiver at 127.0.0.1:.* failed"):
        connecting.result()
    conn.close()
    fake.close()


def test_a_sender_answering_the_challenge_in_several_segments_is_accepted():
    """TCP may split the 68-byte challenge answer; the receiver must read it whole, not one recv() worth."""
    server = listener()
    accepting = Background(accept, server, SECRET, 1.0)
    raw = socket.create_connection(("127.0.0.1", port_of(server)))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.settimeout(IO_TIMEOUT)
    try:
        nonce = read_plain_frame(raw)[HEADER.size :]
        answer = auth_answer(SECRET, nonce)
        for piece in (answer[:4], answer[4:30], answer[30:]):
            raw.sendall(piece)
            time.sleep(0.05)
        receiver = accepting.result()
    finally:
        raw.close()
        server.close()
    receiver.close()


@pytest.mark.parametrize("direction", ["to_receiver", "to_sender"], ids=["sender-answer", "receiver-challenge"])
def test_the_handshake_survives_a_link_that_splits_it(proxied, direction):
    sender, receiver, _relay = proxied(split=direction)
    sender.send("hello")
    assert receiver.recv("hello") == {"type": "hello"}


def test_a_silent_connection_does_not_stretch_the_accept_timeout():
    """A peer that connects and says nothing must not keep accept() waiting past its own timeout."""
    server = listener()
    silent = socket.create_connection(("127.0.0.1", port_of(server)))
    began = time.monotonic()
    accepting = Background(accept, server, SECRET, 0.6)
    try:
        finished = accepting.done(2.0)
        elapsed = time.monotonic() - began
    finally:
        silent.close()  # lets a stuck accept() go on, and end
        accepting.done(IO_TIMEOUT)
        server.close()
    assert finished, f"accept(timeout=0.6) was still waiting after {elapsed:.1f} s on a silent connection"
    with pytest.raises(ChannelError, match="no sender connected within 1 s"):
        accepting.result(0)


def test_accept_times_out_with_a_clear_message():
    server = listener()
    began = time.monotonic()
    try:
        with pytest.raises(ChannelError, match="^no sender connected within 1 s$"):
            accept(server, SECRET, 1.0)
    finally:
        server.close()
    assert 0.9 <= time.monotonic() - began < 2.0


def test_connect_retries_until_the_receiver_listens():
    server = socket.socket(socket.AF_INET)
    server.bind(("127.0.0.1", 0))  # bound, not listening yet: connections are refused
    connecting = Background(connect, "127.0.0.1", port_of(server), SECRET, IO_TIMEOUT)
    try:
        time.sleep(0.3)  # the first attempt, made at once, was refused
        assert not connecting.done(0), "connect() gave up while the receiver was not yet listening"
        server.listen(1)
        receiver = accept(server, SECRET, IO_TIMEOUT)
        sender = connecting.result()
    finally:
        server.close()
    sender.send("hello")
    assert receiver.recv("hello") == {"type": "hello"}
    sender.close()
    receiver.close()


def close_the_first_connection(server: socket.socket) -> None:
    server.accept()[0].close()


def test_a_connection_closed_before_the_challenge_is_tried_again():
    """A receiver not listening yet behind something that accepted for it (a proxy, NAT) closes at once: retried."""
    server = socket.socket(socket.AF_INET)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    early = Background(close_the_first_connection, server)
    connecting = Background(connect, "127.0.0.1", port_of(server), SECRET, IO_TIMEOUT)
    early.result()
    try:
        receiver = accept(server, SECRET, IO_TIMEOUT)
        sender = connecting.result()
    finally:
        server.close()
    sender.send("hello")
    assert receiver.recv("hello") == {"type": "hello"}
    sender.close()
    receiver.close()


def test_connect_gives_up_after_its_timeout():
    server = socket.socket(socket.AF_INET)
    server.bind(("127.0.0.1", 0))
    began = time.monotonic()
    try:
        with pytest.raises(ChannelError, match=f"^cannot reach the receiver at 127.0.0.1:{port_of(server)} within 0 s$"):
            connect("127.0.0.1", port_of(server), SECRET, 0.2)
    finally:
        server.close()
    assert time.monotonic() - began < 2.0


# -- frames changed on the wire ---------------------------------------------------------------------------


def flip(frame: bytes, offset: int) -> bytes:
    return frame[:offset] + bytes([frame[offset] ^ 0x01]) + frame[offset + 1 :]


def shorten(frame: bytes) -> bytes:
    """Announce one byte less and drop the payload's last byte."""
    (length,) = HEADER.unpack(frame[: HEADER.size])
    return HEADER.pack(length - 1) + frame[HEADER.size : -1]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda frame: flip(frame, HEADER.size + MAC_SIZE + 3),
        lambda frame: flip(frame, len(frame) - 1),
        lambda frame: flip(frame, HEADER.size),
        lambda frame: flip(frame, HEADER.size + MAC_SIZE - 1),
        shorten,
    ],
    ids=["payload-first-bytes", "payload-last-byte", "mac-first-byte", "mac-last-byte", "length-and-payload-cut"],
)
def test_a_tampered_frame_fails_authentication(proxied, tamper):
    def mangle(session, direction, index, frame):
        return [tamper(frame)] if direction == "to_receiver" and index == 2 else [frame]

    sender, receiver, _relay = proxied(mangle=mangle)
    sender.send("prepare", container="web1")
    sender.send("commit", container="web1")
    assert receiver.recv("prepare")["container"] == "web1"
    with pytest.raises(ChannelError, match="^a frame from the sender failed authentication$"):
        receiver.recv()


def test_a_tampered_answer_fails_authentication_on_the_sender(proxied):
    def mangle(session, direction, index, frame):
        return [flip(frame, len(frame) - 2)] if direction == "to_sender" and index == 2 else [frame]

    sender, receiver, _relay = proxied(mangle=mangle)
    receiver.send_bytes(b"page data")
    with pytest.raises(ChannelError, match="^a frame from the receiver failed authentication$"):
        sender.recv_bytes()


def test_a_replayed_frame_fails(proxied):
    def mangle(session, direction, index, frame):
        return [frame, frame] if direction == "to_receiver" and index == 1 else [frame]

    sender, receiver, _relay = proxied(mangle=mangle)
    sender.send("rollback")
    assert receiver.recv("rollback") == {"type": "rollback"}
    with pytest.raises(ChannelError, match="failed authentication"):
        receiver.recv()


def test_reordered_frames_fail(proxied):
    held: List[bytes] = []

    def mangle(session, direction, index, frame):
        if direction != "to_receiver":
            return [frame]
        if index == 1:
            held.append(frame)
            return []
        return [frame] + held if index == 2 else [frame]

    sender, receiver, _relay = proxied(mangle=mangle)
    sender.send_bytes(b"first")
    sender.send_bytes(b"second")
    with pytest.raises(ChannelError, match="failed authentication"):
        receiver.recv_bytes()


def test_a_frame_reflected_back_to_its_author_fails(proxied):
    """The receiver's welcome, sent back to it as the sender's first frame, has the wrong direction."""
    welcome: List[bytes] = []

    def mangle(session, direction, index, frame):
        if direction == "to_sender" and index == 1:
            welcome.append(frame)
        if direction == "to_receiver" and index == 1:
            return [welcome[0]]
        return [frame]

    sender, receiver, _relay = proxied(mangle=mangle)
    sender.send("welcome")
    with pytest.raises(ChannelError, match="failed authentication"):
        receiver.recv()


@pytest.mark.parametrize("direction", ["to_sender", "to_receiver"])
def test_a_frame_from_an_earlier_session_with_the_same_secret_fails(direction):
    """Replay across sessions: swap a frame of session 2 for the frame at the same place in session 1."""
    server = listener()

    def mangle(session, frame_direction, index, frame):
        # The sender's decision is its first frame; the receiver's answer its second (after the welcome).
        position = 2 if direction == "to_sender" else 1
        if session == 2 and frame_direction == direction and index == position:
            return [relay.frames[1][direction][position - 1]]
        return [frame]

    relay = FrameProxy(port_of(server), mangle=mangle)
    answers = []
    try:
        for decision in ("rollback", "commit"):
            accepting = Background(accept, server, SECRET, IO_TIMEOUT)
            sender = connect("127.0.0.1", relay.port, SECRET, IO_TIMEOUT)
            receiver = accepting.result()
            for channel in (sender, receiver):
                channel.settimeout(IO_TIMEOUT)
            sender.send(decision)
            try:
                received = receiver.recv()
                receiver.send("ok", decision=received["type"])
                answers.append(sender.recv("ok")["decision"])
            except ChannelError as exc:
                answers.append(exc)
            sender.close()
            receiver.close()
    finally:
        server.close()
        relay.close()
    assert answers[0] == "rollback"
    assert isinstance(
        answers[1], ChannelError
    ), f"a frame of the first session was accepted in the second: {answers[1]!r}"
    assert "failed authentication" in str(answers[1])


def test_a_recorded_receiver_cannot_be_replayed_to_a_new_sender():
    """Someone who recorded a session can play the receiver's side of it back (same nonce, same welcome, same
    answers) to a sender that connects to them later; the sender must notice, as the nonce is not its own."""
    server = listener()
    relay = FrameProxy(port_of(server))
    try:
        accepting = Background(accept, server, SECRET, IO_TIMEOUT)
        sender = connect("127.0.0.1", relay.port, SECRET, IO_TIMEOUT)
        receiver = accepting.result()
        sender.close()
        receiver.close()
    finally:
        server.close()
        relay.close()
    fake = listener()
    connecting = Background(connect, "127.0.0.1", port_of(fake), SECRET, IO_TIMEOUT)
    conn, _address = fake.accept()
    conn.settimeout(IO_TIMEOUT)
    try:
        conn.sendall(relay.challenges[1]["to_sender"])
        read_plain_frame(conn)
        conn.sendall(relay.frames[1]["to_sender"][0])
        with pytest.raises(ChannelError, match="authentication with the receiver"):
            connecting.result()
    finally:
        conn.close()
        fake.close()


# -- broken links -----------------------------------------------------------------------------------------


@pytest.fixture
def raw_pair():
    """The receiver's Channel and a raw socket that passed the challenge, for bytes no Channel would write."""
    server = listener()
    accepting = Background(accept, server, SECRET, IO_TIMEOUT)
    raw = socket.create_connection(("127.0.0.1", port_of(server)))
    raw.settimeout(IO_TIMEOUT)
    try:
        raw.sendall(auth_answer(SECRET, read_plain_frame(raw)[HEADER.size :]))
        channel = accepting.result()
        assert json.loads(payload_of(read_mac_frame(raw))) == {"type": "welcome"}
    finally:
        server.close()
    channel.settimeout(IO_TIMEOUT)
    yield channel, raw
    channel.close()
    raw.close()


def test_an_oversized_frame_announcement_is_refused(raw_pair):
    channel, raw = raw_pair
    raw.sendall(HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(ChannelError, match=f"^the sender announced a frame of {MAX_FRAME + 1} bytes$"):
        channel.recv_bytes()


@pytest.mark.parametrize(
    "partial",
    [b"", HEADER.pack(10)[:2], HEADER.pack(10), HEADER.pack(10) + b"m" * 20, HEADER.pack(10) + b"m" * 32 + b"abc"],
    ids=["nothing", "in-header", "after-header", "in-mac", "in-payload"],
)
def test_the_peer_closing_mid_frame_is_a_channel_error(raw_pair, partial):
    channel, raw = raw_pair
    raw.sendall(partial)
    raw.close()
    with pytest.raises(ChannelError, match="^the sender closed the connection$"):
        channel.recv_bytes()


def test_a_silent_peer_times_out(raw_pair):
    channel, _raw = raw_pair
    channel.settimeout(0.1)
    with pytest.raises(ChannelError, match="^the sender did not answer in time$"):
        channel.recv_bytes()


def test_sending_to_a_closed_peer_is_a_channel_error(pair):
    sender, receiver = pair
    receiver.close()
    with pytest.raises(ChannelError, match="^sending to the receiver failed: "):
        for _attempt in range(64):  # the first sends may still land in the kernel's buffer
            sender.send_bytes(b"x" * 65536)
