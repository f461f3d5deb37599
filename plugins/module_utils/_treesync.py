# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a directory tree on the receiver up to date with the sender's, over the control channel.

Used for the container's bundle when it is not on shared storage (a full pass while the container runs, then
a pass inside the frozen window that moves only what changed) and for the non-memory images when memory goes
through CRIU's page server. Files count as unchanged when type, size, mode and modification time match.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from typing import Any, Dict

from ansible_collections.ferry.runc.plugins.module_utils._channel import MAX_FRAME, Channel, ChannelError

CHUNK = 1 << 20
Listing = Dict[str, Dict[str, Any]]


def list_tree(root: str) -> Listing:
    """Every directory, regular file and symlink under root, keyed by relative path (parents before children)."""
    listing: Listing = {}
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(subdirs) + sorted(files):
            path = os.path.join(directory, name)
            entry = _describe(path)
            if entry:
                listing[os.path.relpath(path, root)] = entry
    return listing


def _describe(path: str) -> dict[str, Any] | None:
    info = os.lstat(path)
    common = {"mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid, "mtime_ns": info.st_mtime_ns}
    if stat.S_ISLNK(info.st_mode):
        return dict(common, kind="link", target=os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return dict(common, kind="dir")
    if stat.S_ISREG(info.st_mode):
        return dict(common, kind="file", size=info.st_size)
    return None


def _same(local: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if local is None or local["kind"] != wanted["kind"]:
        return False
    if wanted["kind"] == "file":
        return local["size"] == wanted["size"] and local["mtime_ns"] == wanted["mtime_ns"]
    if wanted["kind"] == "link":
        return local["target"] == wanted["target"]
    return True


def plan(source: Listing, local: Listing, delete_extra: bool) -> tuple[list[str], list[str]]:
    """The files to fetch and the local paths to remove (deepest first) so that local matches source."""
    fetch = [path for path, entry in source.items() if entry["kind"] == "file" and not _same(local.get(path), entry)]
    remove = [
        path
        for path in sorted(local, reverse=True)
        if (path not in source and delete_extra) or (path in source and local[path]["kind"] != source[path]["kind"])
    ]
    return fetch, remove


def send_tree(channel: Channel, root: str, target: str, delete_extra: bool) -> int:
    """Sender side: offer root's listing, send the files the receiver asks for; returns the bytes of file data sent."""
    listing = list_tree(root)
    batches = _batches(list(listing.items()))
    for number, batch in enumerate(batches, 1):
        channel.send("sync", target=target, listing=dict(batch), delete_extra=delete_extra, more=number < len(batches))
    wanted: list[str] = []
    while True:
        answer = channel.recv("want")
        wanted += answer["paths"]
        if not answer.get("more"):
            break
    sent = 0
    for relative in wanted:
        if relative not in listing or listing[relative]["kind"] != "file":
            raise ChannelError(f"the receiver asked for {relative!r}, which is not a file of {root}")
        sent += _send_file(channel, os.path.join(root, relative), listing[relative]["size"])
        channel.send("eof", path=relative)
    channel.recv("ok")
    return sent


def _send_file(channel: Channel, path: str, size: int) -> int:
    """Send exactly the listed size: a file that changed since it was listed (the container runs during the first
    pass) is cut or zero-filled, and its new mtime makes the next pass send it again."""
    try:
        handle = open(path, "rb")  # pylint: disable=consider-using-with
    except FileNotFoundError:
        handle = io.BytesIO()
    with handle:
        remaining = size
        while remaining:
            block = handle.read(min(CHUNK, remaining)) or bytes(min(CHUNK, remaining))
            channel.send_bytes(block)
            remaining -= len(block)
    return size


def _batches(items: list[Any]) -> list[list[Any]]:
    """Split items into runs whose JSON fits well within one frame (a root file system lists to many MiB)."""
    batches: list[list[Any]] = [[]]
    size = 0
    for item in items:
        item_size = len(json.dumps(item))
        if batches[-1] and size + item_size > MAX_FRAME // 2:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def receive_tree(channel: Channel, root: str, message: dict[str, Any]) -> int:
    """Receiver side of one 'sync' message: apply it under root; returns the bytes of file data received."""
    source: Listing = dict(message["listing"])
    while message.get("more"):
        message = channel.recv("sync")
        source.update(message["listing"])
    for relative in source:
        _check_relative(relative)
    os.makedirs(root, mode=0o700, exist_ok=True)
    fetch, remove = plan(source, list_tree(root), message["delete_extra"])
    for relative in remove:
        _remove(os.path.join(root, relative))
    for relative, entry in source.items():
        if entry["kind"] == "dir":
            _inside(root, relative)
            os.makedirs(os.path.join(root, relative), mode=0o700, exist_ok=True)
        elif entry["kind"] == "link" and not _same(_describe_or_none(os.path.join(root, relative)), entry):
            _inside(root, relative)
            _remove(os.path.join(root, relative))
            os.symlink(entry["target"], os.path.join(root, relative))
    batches = _batches(fetch)
    for number, batch in enumerate(batches, 1):
        channel.send("want", paths=batch, more=number < len(batches))
    received = sum(_receive_file(channel, root, relative, source[relative]["size"]) for relative in fetch)
    for relative, entry in source.items():
        path = os.path.join(root, relative)
        if _describe(path) != entry:
            _apply_metadata(path, entry)
    channel.send("ok", bytes=received)
    return received


def _receive_file(channel: Channel, root: str, relative: str, size: int) -> int:
    path = _inside(root, relative)
    temporary = path + ".ferry-partial"
    received = 0
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        while received < size:
            block = channel.recv_bytes()
            handle.write(block)
            received += len(block)
    if received != size or channel.recv("eof")["path"] != relative:
        raise ChannelError(f"{relative}: received {received} bytes, expected {size}")
    os.replace(temporary, path)
    return received


def _apply_metadata(path: str, entry: dict[str, Any]) -> None:
    os.lchown(path, entry["uid"], entry["gid"])
    if entry["kind"] != "link":
        os.chmod(path, entry["mode"])
    os.utime(path, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)


def _describe_or_none(path: str) -> dict[str, Any] | None:
    return _describe(path) if os.path.lexists(path) else None


def _check_relative(relative: str) -> None:
    if os.path.isabs(relative) or ".." in relative.split(os.sep):
        raise ChannelError(f"refusing path {relative!r} outside the target directory")


def _inside(root: str, relative: str) -> str:
    """The path of relative under root, refusing any parent that is a symlink (it could lead outside root)."""
    parent = os.path.dirname(os.path.join(root, relative))
    if os.path.realpath(parent) != os.path.normpath(os.path.join(os.path.realpath(root), os.path.dirname(relative))):
        raise ChannelError(f"refusing {relative!r}: a parent directory is a symlink")
    return os.path.join(root, relative)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
