# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration's control channel: one TCP connection between the source and the destination.

Frames are ``length (4 bytes) | HMAC-SHA256 (32 bytes) | payload``. The MAC covers the sender's direction,
a per-direction sequence number and the payload, keyed with the migration's secret, so a frame cannot be
forged, replayed or reordered by anyone on the link who lacks the secret. Payloads are either JSON messages
or raw data chunks (file contents). The secret itself never crosses the wire: the receiver opens with a
random nonce and the sender proves it knows the secret by MAC-ing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils._errors import QUOTED_LOG_LINES, FerryError

MAC_SIZE = 32
AUTH_MAC_SIZE = 64
# With shared storage the sender leaves this file in the image directory; the receiver must read the same token.
SHARE_TOKEN = ".ferry-share-token"
MAX_FRAME = 8 * 1024 * 1024
HEADER = struct.Struct("!I")
# A peer that vanishes (host down, link cut) is noticed after about LINK_TIMEOUT s: by TCP keep-alive when the
# connection is idle (a quarter of it idle, then six probes an eighth apart), by TCP_USER_TIMEOUT when data sent to it
# stays unacknowledged (keep-alive probes do not run then, and TCP's own retries would take about 15 minutes). A
# shorter outage (a link flap) only delays the frames.
LINK_TIMEOUT = 20
KEEPALIVE_PROBES = 6
CHALLENGE_TIMEOUT = 5


class ChannelError(FerryError):
    """The peer misbehaved, went away or could not be reached."""


class PeerFailed(ChannelError):
    """The peer answered a request with 'failed': its message (which names its host and step) and the lines of CRIU's
    log it quoted."""

    def __init__(self, message: str, log: list[str]) -> None:
        super().__init__(message, log=log)

    def message(self) -> str:
        return self.cause + (". CRIU log: " + " | ".join(self.log[-QUOTED_LOG_LINES:]) if self.log else "")


class Channel:
    """An authenticated, ordered stream of messages over a connected socket."""

    def __init__(self, sock: socket.socket, secret: str, role: str, session: str, link_timeout: float = LINK_TIMEOUT) -> None:
        _keepalive(sock, link_timeout)
        self._sock = sock
        # Both sides' nonces make the key new for every connection: frames of another session do not verify.
        self._key = hashlib.sha256(f"ferry.runc channel|{session}|{secret}".encode()).digest()
        self._role = role
        self._peer_role = "receiver" if role == "sender" else "sender"
        self._sent = 0
        self._received = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def peer_role(self) -> str:
        return self._peer_role

    @property
    def peer_address(self) -> str:
        return self._sock.getpeername()[0]

    def _mac(self, direction: str, seq: int, payload: bytes) -> bytes:
        return hmac.new(self._key, f"{direction}|{seq}|".encode() + payload, hashlib.sha256).digest()

    def send_bytes(self, payload: bytes) -> None:
        if len(payload) > MAX_FRAME:
            raise ChannelError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
        self._sent += 1
        frame = HEADER.pack(len(payload)) + self._mac(self._role, self._sent, payload) + payload
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            raise ChannelError(f"sending to the {self._peer_role} failed: {exc}") from exc
        self.bytes_sent += len(frame)

    def recv_bytes(self) -> bytes:
        (length,) = HEADER.unpack(self._read_exactly(HEADER.size))
        if length > MAX_FRAME:
            raise ChannelError(f"the {self._peer_role} announced a frame of {length} bytes")
        mac = self._read_exactly(MAC_SIZE)
        payload = self._read_exactly(length)
        self._received += 1
        if not hmac.compare_digest(mac, self._mac(self._peer_role, self._received, payload)):
            raise ChannelError(f"a frame from the {self._peer_role} failed authentication")
        self.bytes_received += HEADER.size + MAC_SIZE + length
        return payload

    def send(self, kind: str, **fields: Any) -> None:
        self.send_bytes(json.dumps(dict(fields, type=kind), sort_keys=True).encode())

    def recv(self, *expected: str) -> dict[str, Any]:
        """Receive one JSON message; when kinds are given, anything else is an error (a 'failed' names its cause)."""
        payload = self.recv_bytes()
        try:
            message = json.loads(payload)
        except ValueError as exc:
            raise ChannelError(f"the {self._peer_role} sent a malformed message") from exc
        if expected and message.get("type") not in expected:
            if message.get("type") == "failed":
                raise PeerFailed(str(message.get("error")), message.get("log") or [])
            raise ChannelError(f"expected {' or '.join(expected)} from the {self._peer_role}, got {message.get('type')}")
        return message

    def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its answer: 'ok' or 'failed'."""
        self.send(kind, **fields)
        return self.recv("ok")

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def _read_exactly(self, size: int) -> bytes:
        chunks = []
        while size:
            try:
                chunk = self._sock.recv(min(size, 1 << 20))
            except socket.timeout as exc:
                raise ChannelError(f"the {self._peer_role} did not answer in time") from exc
            except OSError as exc:
                raise ChannelError(f"the connection to the {self._peer_role} failed: {exc}") from exc
            if not chunk:
                raise ChannelError(f"the {self._peer_role} closed the connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _keepalive(sock: socket.socket, link_timeout: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(link_timeout / 4)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(link_timeout / 8)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(link_timeout * 1000))


def _auth_mac(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), ("ferry.runc auth|" + nonce).encode(), hashlib.sha256).hexdigest()


def accept(listener: socket.socket, secret: str, timeout: float, link_timeout: float = LINK_TIMEOUT) -> Channel:
    """Wait for the sender; connections that fail the challenge are dropped and waiting goes on."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelError(f"no sender connected within {timeout:.0f} s")
        listener.settimeout(remaining)
        try:
            sock, _peer = listener.accept()
        except socket.timeout as exc:
            raise ChannelError(f"no sender connected within {timeout:.0f} s") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A silent client must neither stretch the wait past the deadline nor hold up a real sender for long.
        sock.settimeout(max(min(CHALLENGE_TIMEOUT, deadline - time.monotonic()), 0.001))
        nonce = os.urandom(16).hex()
        try:
            sock.sendall(HEADER.pack(len(nonce)) + nonce.encode())
            answer = _read_plain(sock)
        except (OSError, ChannelError):
            sock.close()
            continue
        mac, sender_nonce = answer[:AUTH_MAC_SIZE], answer[AUTH_MAC_SIZE:].decode(errors="replace")
        if hmac.compare_digest(mac, _auth_mac(secret, nonce).encode()):
            sock.settimeout(None)
            channel = Channel(sock, secret, "receiver", nonce + sender_nonce, link_timeout)
            channel.send("welcome")
            return channel
        sock.close()


def connect(address: str, port: int, secret: str, timeout: float, link_timeout: float = LINK_TIMEOUT) -> Channel:
    """Connect to the receiver, retrying until it listens (and sends its challenge) or the timeout passes, and
    authenticate. A connection closed before the challenge (a receiver not listening yet behind a proxy or NAT that
    accepted for it) is retried; one closed after the answer is a wrong secret."""
    deadline = time.monotonic() + timeout
    while True:
        sock, nonce = _reach(address, port)
        if nonce is not None:
            break
        if time.monotonic() >= deadline:
            raise ChannelError(f"cannot reach the receiver at {address}:{port} within {timeout:.0f} s")
        time.sleep(0.5)
    try:
        sender_nonce = os.urandom(16).hex()
        answer = _auth_mac(secret, nonce).encode() + sender_nonce.encode()
        sock.sendall(HEADER.pack(len(answer)) + answer)
        channel = Channel(sock, secret, "sender", nonce + sender_nonce, link_timeout)
        channel.recv("welcome")
    except (OSError, ChannelError) as exc:
        sock.close()
        raise ChannelError(
            f"authentication with the receiver at {address}:{port} failed (do both sides have the same secret?): {exc}"
        ) from exc
    sock.settimeout(None)
    return channel


def _reach(address: str, port: int) -> tuple[socket.socket | None, str | None]:
    """A connection and the receiver's challenge, or (None, None) when there is no receiver to answer yet."""
    try:
        sock = socket.create_connection((address, port), timeout=10)
    except OSError:
        return None, None
    # Each frame goes out in one write; without this, a short frame after another waits for a delayed ACK (40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return sock, _read_plain(sock).decode()
    except (OSError, ChannelError):
        sock.close()
        return None, None


def _read_plain(sock: socket.socket) -> bytes:
    """Read one unauthenticated frame of the challenge (short by construction)."""
    (length,) = HEADER.unpack(_read_plain_exactly(sock, HEADER.size))
    if length > 256:
        raise ChannelError("oversized authentication frame")
    return _read_plain_exactly(sock, length)


def _read_plain_exactly(sock: socket.socket, size: int) -> bytes:
    # A timeout makes the socket non-blocking inside, and MSG_WAITALL then returns what has arrived so far.
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ChannelError("the peer closed the connection during authentication")
        data += chunk
    return data
