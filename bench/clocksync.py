# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Align one lab VM's wall clock with another's over the private link, NTP style, standard library only.

The benchmark's downtime is the gap in CLOCK_REALTIME that the workload logs across a migration: the last look at
the clock happens on the source, the first one after the restore on the destination. An offset between the two
clocks adds to (or hides) that gap, and QEMU guests start with the host's RTC (whole seconds) and drift under TCG.
So before each migration the destination's clock is set to the source's (bench/bench.yml installs this file on
both lab VMs, without an execute bit, and runs it with their python3):

    python3 clocksync.py serve --address SRC_ADDR [--port 27199] [--timeout 60]     # on the source, in the background
    python3 clocksync.py sync --server SRC_ADDR [--port 27199] [--samples 25] [--set]  # on the destination

`sync` sends timestamped datagrams, takes the sample with the shortest round trip, computes
offset = server time - midpoint of the local send and receive times, steps the local clock by it (--set), measures
again and prints one JSON line: offset_ms (before), rtt_ms, residual_ms (after), bound_ms (half the round trip).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

QUIT = b"quit"


def serve(address: str, port: int, timeout: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data, peer = sock.recvfrom(64)
            except socket.timeout:
                break
            if data == QUIT:
                break
            sock.sendto(data + struct.pack("!d", time.time()), peer)


def measure(server: str, port: int, samples: int, wait: float) -> tuple[float, float]:
    """(offset, round trip) in seconds of the sample with the shortest round trip."""
    best: tuple[float, float] | None = None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        deadline = time.monotonic() + wait
        sent = 0
        while sent < samples or best is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"clocksync: no answer from {server}:{port} within {wait:.0f} s")
            sent += 1
            t1 = time.time()
            sock.sendto(struct.pack("!d", t1), (server, port))
            try:
                data = sock.recvfrom(64)[0]
            except socket.timeout:
                continue
            t4 = time.time()
            echoed, t_server = struct.unpack("!dd", data)
            if echoed != t1:
                continue
            rtt = t4 - t1
            if best is None or rtt < best[1]:
                best = (t_server - (t1 + t4) / 2, rtt)
    return best


def sync(server: str, port: int, samples: int, wait: float, set_clock: bool) -> dict:
    offset, rtt = measure(server, port, samples, wait)
    if set_clock:
        time.clock_settime(time.CLOCK_REALTIME, time.time() + offset)
    residual, rtt_after = measure(server, port, samples, wait)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(QUIT, (server, port))
    return {
        "offset_ms": round(offset * 1000, 2),
        "rtt_ms": round(rtt * 1000, 2),
        "set": set_clock,
        "residual_ms": round(residual * 1000, 2),
        "bound_ms": round(rtt_after * 500, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--address", required=True)
    serve_parser.add_argument("--port", type=int, default=27199)
    serve_parser.add_argument("--timeout", type=float, default=60)
    sync_parser = sub.add_parser("sync")
    sync_parser.add_argument("--server", required=True)
    sync_parser.add_argument("--port", type=int, default=27199)
    sync_parser.add_argument("--samples", type=int, default=25)
    sync_parser.add_argument("--wait", type=float, default=30, help="give up after this many seconds without answers")
    sync_parser.add_argument("--set", action="store_true", help="step the local clock to the server's")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.address, args.port, args.timeout)
        return 0
    print(json.dumps(sync(args.server, args.port, args.samples, args.wait, args.set)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
