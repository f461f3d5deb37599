# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the images reach the destination, as the sender sees it: one interface, two transports.

SharedDirectory: every image is written into the image directory, which the receiver reads through shared storage
(NFS): it reads back and hashes each pre-dump round at once, while the container runs, and restores the final images
from the share, hashing them as the restore reads them. The sender hashes its own copy meanwhile, so a check costs
one pass on each side, side by side, and the final images cross the link once. The directory also carries the
migration's decision record, which a receiver that lost the sender reads. PageServer: memory pages go straight to a
CRIU page server the receiver starts for each dump, the other (small) images over the control channel; there is no
record.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ansible_collections.ferry.runc.plugins.module_utils import _manifest, _protocol, _treesync
from ansible_collections.ferry.runc.plugins.module_utils._channel import SHARE_TOKEN, Channel
from ansible_collections.ferry.runc.plugins.module_utils._errors import CommandError

DECISION_RECORD = "ferry-decision"
UNDECIDED, COMMIT, ABORT = "undecided", "commit", "abort"


class Transport:
    """What differs between the transports, at the points of the migration where it differs."""

    name = ""
    shares_images = False

    def prepare(self, image_dir: str) -> str | None:
        """Set up the image directory before the receiver checks it; returns the token it must see there, if any."""
        return None

    def dump_target(self, channel: Channel, directory: str, parent: str | None) -> str | None:
        """The --page-server address for a dump into directory, None to write the pages into the directory."""
        return None

    def after_round(self, channel: Channel, path: str, directory: str) -> dict[str, Any]:
        """After a pre-dump round, while the container runs: what the round's record gains."""
        return {}

    def hand_over(self, channel: Channel, path: str, directory: str) -> dict[str, Any]:
        """Inside the frozen window, after the final dump: get its images to the receiver; what the record gains."""
        return {}

    def record(self, image_dir: str, decision: str) -> None:
        """Write the migration's decision (commit or abort) where a receiver that lost the sender can read it."""


class SharedDirectory(Transport):
    name = "shared"
    shares_images = True

    def prepare(self, image_dir: str) -> str:
        token = os.urandom(16).hex()
        with open(os.path.join(image_dir, SHARE_TOKEN), "w", encoding="utf-8") as handle:
            handle.write(token)
        # Made now and overwritten in place later: an NFS client may cache a file's absence, not an open file's change.
        write_decision(image_dir, UNDECIDED)
        return token

    def after_round(self, channel: Channel, path: str, directory: str) -> dict[str, Any]:
        fetched = check_on_receiver(channel, path, directory)
        return {"bytes_fetched": fetched.size, "fetch_seconds": fetched.seconds}

    def record(self, image_dir: str, decision: str) -> None:
        write_decision(image_dir, decision)


class PageServer(Transport):
    name = "page-server"

    def dump_target(self, channel: Channel, directory: str, parent: str | None) -> str:
        answer = _protocol.request(channel, _protocol.PageServer(dir=directory, parent=parent), _protocol.PageServerReady)
        return f"{answer.address}:{answer.port}"

    def hand_over(self, channel: Channel, path: str, directory: str) -> dict[str, Any]:
        # The pages went to the receiver's page server over TLS; the check covers the small images sent here.
        began = time.monotonic()
        sent = _treesync.send_tree(channel, path, f"images/{directory}", delete_extra=False)
        return {"images_sent_bytes": sent, "images_sent_seconds": round(time.monotonic() - began, 3)}


TRANSPORTS = {transport.name: transport for transport in (SharedDirectory, PageServer)}


def make(name: str) -> Transport:
    return TRANSPORTS[name]()


def check_on_receiver(channel: Channel, path: str, directory: str) -> _protocol.Fetched:
    """The receiver reads back and hashes the images of directory on the shared directory while this side hashes its
    own; its answer when the two match, else CommandError naming each file that differs."""
    _protocol.send(channel, _protocol.Fetch(dir=directory, sizes=_manifest.sizes(path)))
    manifest = _manifest.write(path)
    fetched = _protocol.receive(channel, _protocol.Fetched)
    _require_same(manifest, fetched.manifest, directory, "read back")
    return fetched


def restore_checked(channel: Channel, path: str, directory: str, lazy: dict[str, Any] | None, checked: bool) -> _protocol.Held:
    """The receiver restores the images of directory held, hashing them (when checked) as the restore reads them,
    while this side hashes its own; its answer when the two match, else CommandError naming each file that differs
    (the receiver's held copy, which never ran, is then dropped by the rollback)."""
    _protocol.send(channel, _protocol.Restore(dir=directory, sizes=_manifest.sizes(path) if checked else {}, lazy=lazy))
    manifest = _manifest.write(path) if checked else {}
    held = _protocol.receive(channel, _protocol.Held)
    _require_same(manifest, held.manifest, directory, "restored")
    return held


def _require_same(manifest: _manifest.Manifest, found: _manifest.Manifest, directory: str, how: str) -> None:
    problems = _manifest.mismatches(manifest, found)
    if problems:
        raise CommandError(f"the destination {how} images of {directory} that differ from the source's: "
                           + "; ".join(problems[:5]), step=f"checking the images of {directory}")


def write_decision(image_dir: str, decision: str) -> None:
    """Overwrite the record in place and flush it to the server before anything acts on the decision."""
    descriptor = os.open(os.path.join(image_dir, DECISION_RECORD), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(decision + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_decision(image_dir: str, timeout: float) -> str | None:
    """The record's decision, or None when there is none or the share does not answer within timeout seconds (a hard
    NFS mount over a cut link blocks the reader: the read runs in a thread that is left behind)."""
    found: list[str] = []

    def read() -> None:
        try:
            with open(os.path.join(image_dir, DECISION_RECORD), encoding="utf-8") as handle:
                found.append(handle.read().strip())
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found and found[0] in (COMMIT, ABORT) else None
