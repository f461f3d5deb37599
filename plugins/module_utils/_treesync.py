# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a directory tree on the receiver up to date with the sender's, over the control channel.

Used for the container's bundle when it is not on shared storage (a full pass while the container runs, then
a pass inside the frozen window that moves only what changed) and for the non-memory images when memory goes
through CRIU's page server.

The container controls the tree being read and can change it while a pass runs, so neither side resolves a path
through the tree: each directory is opened from its parent's descriptor with O_NOFOLLOW, one component at a time,
and every change on the receiver is made relative to such a descriptor, never following a symlink. Symlinks are
sent as symlinks; devices, sockets and FIFOs are not sent (TreeSender.skipped names them). The receiver refuses,
before it changes anything, a listing with an entry that is not a plain relative path or whose parent is not a
directory of the listing.

A file counts as unchanged, on a first pass, when the receiver's copy has the listed size and modification time.
After a pass, TreeSender knows the identity (device, inode, size, mtime, ctime) of each file as the receiver holds
it, from fstat of the descriptor it read, and a file then counts as unchanged only while that identity stays the
same: the kernel sets ctime on every change of content or metadata and user space cannot set it (utime cannot,
and setting the clock takes CAP_SYS_TIME), so a replaced file put back with the same size and mtime still differs.
Hashing the tree again in the frozen window would tell the same at the cost of reading every file: seconds of
downtime per GiB. The digest (BLAKE2b, _manifest's) of each file's bytes, computed as they stream, is checked by the receiver before the
file takes its place.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from typing import Any, Collection, Dict, NamedTuple, Tuple

from ansible_collections.ferry.runc.plugins.module_utils._channel import MAX_FRAME, Channel, ChannelError
from ansible_collections.ferry.runc.plugins.module_utils._manifest import new_digest

CHUNK = 1 << 20
# Ferry's owner marker at the top of a bundle directory: syncs neither list, send nor remove it.
OWNER_MARKER = ".ferry-owner.json"
PARTIAL_PREFIX = ".ferry-partial-"
# The kind a scan gives devices, sockets and FIFOs: listed nowhere, never sent.
SPECIAL = "special"
Listing = Dict[str, Dict[str, Any]]
Identity = Tuple[int, int, int, int, int]

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# What an open or readlink by name fails with when the entry is gone or is no longer of the kind it was listed as.
_CHANGED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL)
_NUMBERS = ("mode", "uid", "gid", "mtime_ns")


class TreeSyncError(ChannelError):
    """A listing or a path that would lead the sync outside its tree, or a file that arrived damaged."""


class _Scan(NamedTuple):
    listing: Listing
    identities: Dict[str, Identity]


def list_tree(root: str) -> Listing:
    """Every directory, regular file and symlink under root, keyed by relative path (parents before children)."""
    root_fd = _open_root(root)
    try:
        return _split_special(_scan(root_fd).listing)[0]
    finally:
        os.close(root_fd)


def _open_root(root: str) -> int:
    # The root itself comes from the caller's configuration, not from the tree: it may be reached through symlinks.
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _scan(top_fd: int, hidden: Collection[str] = (OWNER_MARKER,)) -> _Scan:
    """Every entry under top_fd, a directory right before what it holds, read through descriptors only; hidden
    names are left out at the top. An entry that changes kind while it is read is left out (the next pass sees it)."""
    scan = _Scan({}, {})
    names = sorted(name for name in os.listdir(top_fd) if name not in hidden)
    stack = [("", os.dup(top_fd), iter(names))]
    try:
        while stack:
            directory, directory_fd, pending = stack[-1]
            name = next(pending, None)
            if name is None:
                os.close(stack.pop()[1])
                continue
            relative = f"{directory}/{name}" if directory else name
            try:
                child_fd = _scan_entry(scan, directory_fd, name, relative)
            except OSError as exc:
                if exc.errno not in _CHANGED:
                    raise
                continue
            if child_fd is not None:
                stack.append((relative, child_fd, iter(sorted(os.listdir(child_fd)))))
    finally:
        for _directory, directory_fd, _pending in stack:
            os.close(directory_fd)
    return scan


def _scan_entry(scan: _Scan, parent_fd: int, name: str, relative: str) -> int | None:
    """Describe one entry into scan; for a directory, return its open descriptor."""
    info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    directory_fd = None
    if stat.S_ISDIR(info.st_mode):
        directory_fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
        info = os.fstat(directory_fd)
    entry = _describe(info)
    if entry["kind"] == "link":
        entry["target"] = os.readlink(name, dir_fd=parent_fd)
    elif entry["kind"] == "file":
        scan.identities[relative] = _identity(info)
    scan.listing[relative] = entry
    return directory_fd


def _describe(info: os.stat_result) -> dict[str, Any]:
    entry = {"mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid, "mtime_ns": info.st_mtime_ns}
    if stat.S_ISLNK(info.st_mode):
        return dict(entry, kind="link")
    if stat.S_ISDIR(info.st_mode):
        return dict(entry, kind="dir")
    if stat.S_ISREG(info.st_mode):
        return dict(entry, kind="file", size=info.st_size)
    return dict(entry, kind=SPECIAL)


def _identity(info: os.stat_result) -> Identity:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _split_special(listing: Listing) -> tuple[Listing, list[str]]:
    """The listing without devices, sockets and FIFOs, and their paths."""
    kept = {path: entry for path, entry in listing.items() if entry["kind"] != SPECIAL}
    return kept, [path for path in listing if path not in kept]


class _Beneath:
    """Opens the directories of a tree from its root one component at a time, never through a symlink, and keeps
    the last chain open: consecutive entries in tree order share their parents."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._chain: list[tuple[str, int]] = []

    def __enter__(self) -> _Beneath:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._close_from(0)

    def parent(self, relative: str) -> tuple[int, str]:
        """The open directory that holds relative, and relative's name in it."""
        parts = relative.split("/")
        kept = 0
        while kept < min(len(parts) - 1, len(self._chain)) and self._chain[kept][0] == parts[kept]:
            kept += 1
        self._close_from(kept)
        for part in parts[len(self._chain):-1]:
            try:
                self._chain.append((part, os.open(part, _DIRECTORY_FLAGS, dir_fd=self._directory_fd())))
            except OSError as exc:
                if exc.errno not in _CHANGED:
                    raise
                blocked = "/".join(parts[: len(self._chain) + 1])
                raise TreeSyncError(f"refusing {relative!r}: {blocked!r} is not a directory of the tree (a symlink?)") from exc
        return self._directory_fd(), parts[-1]

    def _directory_fd(self) -> int:
        return self._chain[-1][1] if self._chain else self._root_fd

    def _close_from(self, index: int) -> None:
        while len(self._chain) > index:
            os.close(self._chain.pop()[1])


def _same(local: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if local is None or local["kind"] != wanted["kind"]:
        return False
    if wanted["kind"] == "file":
        return local["size"] == wanted["size"] and local["mtime_ns"] == wanted["mtime_ns"]
    if wanted["kind"] == "link":
        return local["target"] == wanted["target"]
    return True


def plan(source: Listing, local: Listing, delete_extra: bool, resend: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """The files to fetch (new, of another size or mtime, or in resend) and the local paths to remove (deepest first)
    so that local matches source."""
    fetch = [
        path
        for path, entry in source.items()
        if entry["kind"] == "file" and (path in resend or not _same(local.get(path), entry))
    ]
    remove = [
        path
        for path in sorted(local, reverse=True)
        if (path not in source and delete_extra) or (path in source and local[path]["kind"] != source[path]["kind"])
    ]
    return fetch, remove


class TreeSender:
    """Sender side of the passes over one tree during one migration.

    skipped: after each pass, the relative paths of the devices, sockets and FIFOs it did not send.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.skipped: list[str] = []
        # After a pass: the identity of each file as the receiver holds it; a file not in here is sent again.
        self._held: dict[str, Identity] | None = None

    def send(self, channel: Channel, target: str, delete_extra: bool) -> int:
        """One pass: offer the listing, send the files the receiver asks for; returns the bytes of file data sent."""
        root_fd = _open_root(self.root)
        try:
            scan = _scan(root_fd)
            listing, self.skipped = _split_special(scan.listing)
            self._offer(channel, listing, scan.identities, target, delete_extra)
            wanted = _receive_wanted(channel)
            held = dict(scan.identities)
            sent = self._send_files(channel, root_fd, listing, wanted, held)
            channel.recv("ok")
        finally:
            os.close(root_fd)
        self._held = held
        return sent

    def _send_files(self, channel: Channel, root_fd: int, listing: Listing, wanted: list[str], held: dict[str, Identity]) -> int:
        """Send the wanted files; held then has the identity of each file as the receiver holds it."""
        sent = 0
        with _Beneath(root_fd) as beneath:
            for relative in wanted:
                if relative not in listing or listing[relative]["kind"] != "file":
                    raise ChannelError(f"the receiver asked for {relative!r}, which is not a file of {self.root}")
                identity = _send_file(channel, beneath, relative, listing[relative]["size"])
                sent += listing[relative]["size"]
                if identity is None:
                    held.pop(relative, None)
                else:
                    held[relative] = identity
        return sent

    def _offer(self, channel: Channel, listing: Listing, identities: dict[str, Identity], target: str, delete_extra: bool) -> None:
        offered = [
            (path, dict(entry, changed=True) if self._changed(path, identities) else entry) for path, entry in listing.items()
        ]
        batches = _batches(offered)
        for number, batch in enumerate(batches, 1):
            channel.send("sync", target=target, listing=dict(batch), delete_extra=delete_extra, more=number < len(batches))

    def _changed(self, path: str, identities: dict[str, Identity]) -> bool:
        """Whether path is a file that the receiver must fetch whatever its copy's size and mtime say."""
        return self._held is not None and path in identities and self._held.get(path) != identities[path]


def send_tree(channel: Channel, root: str, target: str, delete_extra: bool) -> int:
    """One first pass over root (no memory of earlier passes); returns the bytes of file data sent."""
    return TreeSender(root).send(channel, target, delete_extra)


def _receive_wanted(channel: Channel) -> list[str]:
    wanted: list[str] = []
    while True:
        answer = channel.recv("want")
        wanted += answer["paths"]
        if not answer.get("more"):
            return wanted


def _send_file(channel: Channel, beneath: _Beneath, relative: str, size: int) -> Identity | None:
    """Send exactly the listed size and the digest of what was sent: a file that changed since it was listed (the
    container runs during the first pass) is cut or zero-filled, one that is no longer a regular file of the tree is
    sent as zeros. Returns the identity of what was read when it stayed the same throughout, else None."""
    try:
        descriptor = _open_regular(*beneath.parent(relative))
    except TreeSyncError:  # a parent directory was swapped for something else since the listing
        descriptor = None
    if descriptor is None:
        _stream(channel, relative, io.BytesIO(), size)
        return None
    with os.fdopen(descriptor, "rb") as handle:
        before = os.fstat(descriptor)
        _stream(channel, relative, handle, size)
        unchanged = before.st_size == size and _identity(os.fstat(descriptor)) == _identity(before)
    return _identity(before) if unchanged else None


def _open_regular(parent_fd: int, name: str) -> int | None:
    """A descriptor for reading name, or None when it is not (or no longer) a regular file. The first open is
    O_PATH, which does not run a device's open (a watchdog's would arm it); only a regular file is reopened."""
    try:
        path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno not in _CHANGED:
            raise
        return None
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)


def _stream(channel: Channel, relative: str, handle: Any, size: int) -> None:
    digest = new_digest()
    remaining = size
    while remaining:
        block = handle.read(min(CHUNK, remaining)) or bytes(min(CHUNK, remaining))
        channel.send_bytes(block)
        digest.update(block)
        remaining -= len(block)
    channel.send("eof", path=relative, digest=digest.hexdigest())


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
    delete_extra = message["delete_extra"]
    source, resend = _receive_listing(channel, message)
    os.makedirs(root, mode=0o700, exist_ok=True)
    root_fd = _open_root(root)
    try:
        local = _scan(root_fd).listing
        fetch, remove = plan(source, local, delete_extra, resend)
        _remove_all(root_fd, remove)
        _make_dirs_and_links(root_fd, source, local)
        batches = _batches(fetch)
        for number, batch in enumerate(batches, 1):
            channel.send("want", paths=batch, more=number < len(batches))
        received = _receive_files(channel, root_fd, source, fetch)
        _apply_metadata(root_fd, source)
    finally:
        os.close(root_fd)
    channel.send("ok", bytes=received)
    return received


def _receive_listing(channel: Channel, message: dict[str, Any]) -> tuple[Listing, set[str]]:
    """The listing of a 'sync' message and the ones that continue it, checked and in tree order (parents first),
    and the files the sender says changed since the receiver got them."""
    source: Listing = dict(message["listing"])
    while message.get("more"):
        message = channel.recv("sync")
        source.update(message["listing"])
    _check_listing(source)
    resend = {path for path, entry in source.items() if entry.pop("changed", False)}
    return {path: source[path] for path in sorted(source, key=lambda path: path.split("/"))}, resend


def _check_listing(source: Listing) -> None:
    for relative, entry in source.items():
        _check_relative(relative)
        _check_entry(relative, entry)
    for relative in source:
        parent = relative.rpartition("/")[0]
        if parent and source.get(parent, {}).get("kind") != "dir":
            raise TreeSyncError(f"refusing {relative!r}: its parent {parent!r} is not a directory of the listing")


def _check_relative(relative: str) -> None:
    parts = relative.split("/")
    if os.path.isabs(relative) or ".." in parts:
        raise TreeSyncError(f"refusing path {relative!r} outside the target directory")
    if "" in parts or "." in parts or "\0" in relative:
        raise TreeSyncError(f"refusing path {relative!r}: not a plain path of the tree")
    if relative == OWNER_MARKER:
        raise TreeSyncError(f"refusing path {relative!r}: the name of ferry's owner marker")


def _check_entry(relative: str, entry: Any) -> None:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    numbers = _NUMBERS + (("size",) if kind == "file" else ())
    well_formed = (
        kind in ("dir", "file", "link")
        and all(isinstance(entry.get(name), int) for name in numbers)
        and (kind != "link" or (isinstance(entry.get("target"), str) and "\0" not in entry["target"]))
    )
    if not well_formed:
        raise TreeSyncError(f"refusing {relative!r}: malformed entry")


def _remove_all(root_fd: int, remove: list[str]) -> None:
    with _Beneath(root_fd) as beneath:
        for relative in remove:
            _remove_entry(*beneath.parent(relative))


def _remove_entry(parent_fd: int, name: str) -> None:
    """Remove name, with everything in it when it is a directory; a symlink is removed itself, never followed."""
    try:
        os.unlink(name, dir_fd=parent_fd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    directory_fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    try:
        inside = _scan(directory_fd, hidden=()).listing
        with _Beneath(directory_fd) as beneath:
            # A scan lists a directory before what it holds: backwards, its contents go first.
            for relative in reversed(list(inside)):
                child_parent_fd, child = beneath.parent(relative)
                if inside[relative]["kind"] == "dir":
                    os.rmdir(child, dir_fd=child_parent_fd)
                else:
                    os.unlink(child, dir_fd=child_parent_fd)
    finally:
        os.close(directory_fd)
    os.rmdir(name, dir_fd=parent_fd)


def _make_dirs_and_links(root_fd: int, source: Listing, local: Listing) -> None:
    with _Beneath(root_fd) as beneath:
        for relative, entry in source.items():
            if entry["kind"] == "file" or _same(local.get(relative), entry):
                continue
            parent_fd, name = beneath.parent(relative)
            if entry["kind"] == "dir":
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            else:
                _remove_entry(parent_fd, name)
                os.symlink(entry["target"], name, dir_fd=parent_fd)


def _receive_files(channel: Channel, root_fd: int, source: Listing, fetch: list[str]) -> int:
    received = 0
    with _Beneath(root_fd) as beneath:
        for relative in fetch:
            parent_fd, name = beneath.parent(relative)
            received += _receive_file(channel, parent_fd, name, relative, source[relative]["size"])
    return received


def _receive_file(channel: Channel, parent_fd: int, name: str, relative: str, size: int) -> int:
    # A name of its own, created exclusively: nothing already there (a link, a file listed under that name) is touched.
    partial = PARTIAL_PREFIX + os.urandom(8).hex()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    digest = new_digest()
    received = 0
    with os.fdopen(os.open(partial, flags, 0o600, dir_fd=parent_fd), "wb") as handle:
        while received < size:
            block = channel.recv_bytes()
            handle.write(block)
            digest.update(block)
            received += len(block)
    end = channel.recv("eof")
    if received != size or end["path"] != relative or end.get("digest") != digest.hexdigest():
        os.unlink(partial, dir_fd=parent_fd)
        if received != size or end["path"] != relative:
            raise TreeSyncError(f"{relative}: received {received} bytes, expected {size}")
        raise TreeSyncError(f"{relative}: the digest of the data received differs from the sender's")
    os.replace(partial, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    return received


def _apply_metadata(root_fd: int, source: Listing) -> None:
    with _Beneath(root_fd) as beneath:
        for relative, entry in source.items():
            parent_fd, name = beneath.parent(relative)
            if _metadata(_describe(os.stat(name, dir_fd=parent_fd, follow_symlinks=False))) == _metadata(entry):
                continue
            if entry["kind"] == "link":
                _apply_link_metadata(parent_fd, name, entry)
            else:
                _apply_own_metadata(parent_fd, name, entry)


def _metadata(entry: dict[str, Any]) -> tuple[int, ...]:
    return tuple(entry[name] for name in _NUMBERS)


def _apply_own_metadata(parent_fd: int, name: str, entry: dict[str, Any]) -> None:
    """Owner, mode and mtime of a directory or file, set through a descriptor of the entry itself."""
    descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        os.chown(descriptor, entry["uid"], entry["gid"])
        os.chmod(descriptor, entry["mode"])
        os.utime(descriptor, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    finally:
        os.close(descriptor)


def _apply_link_metadata(parent_fd: int, name: str, entry: dict[str, Any]) -> None:
    """Owner and mtime of the symlink itself (Linux has no mode for symlinks)."""
    os.chown(name, entry["uid"], entry["gid"], dir_fd=parent_fd, follow_symlinks=False)
    os.utime(name, ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=parent_fd, follow_symlinks=False)


def claim_tree(path: str, owner: dict[str, Any]) -> bool:
    """Make path the tree of owner (a dict naming at least its "container", e.g. also its "migration"): create it
    (missing parents too; the new directory 0700) with ferry's owner marker in it, or accept it as it is when it
    holds a marker naming the same container (an earlier copy made by ferry). Returns whether this call created it.

    Raises FileExistsError when something else is at path.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        marked = _read_owner(path)
        if marked is None or marked.get("container") != owner["container"]:
            raise FileExistsError(
                f"{path} exists and holds something not made by ferry for container {owner['container']}"
                f" (no {OWNER_MARKER} naming it): move it away or choose another path"
            ) from None
        return False
    try:
        _write_owner(path, owner)
    except OSError:
        release_tree(path, created=True)
        raise
    return True


def release_tree(path: str, created: bool) -> None:
    """Remove the tree at path when claim_tree created it (created=True), never following a symlink."""
    if not created:
        return
    path = os.path.abspath(path)
    parent_fd = _open_root(os.path.dirname(path))
    try:
        _remove_entry(parent_fd, os.path.basename(path))
    finally:
        os.close(parent_fd)


def _read_owner(path: str) -> dict[str, Any] | None:
    """The owner in the marker of the directory at path; None when path is no directory (a symlink is not one) or
    holds no readable marker."""
    try:
        directory_fd = os.open(path, _DIRECTORY_FLAGS)
        try:
            descriptor = _open_regular(directory_fd, OWNER_MARKER)
        finally:
            os.close(directory_fd)
        if descriptor is None:
            return None
        with os.fdopen(descriptor, "rb") as handle:
            owner = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _write_owner(path: str, owner: dict[str, Any]) -> None:
    directory_fd = os.open(path, _DIRECTORY_FLAGS)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(OWNER_MARKER, flags, 0o600, dir_fd=directory_fd)
    finally:
        os.close(directory_fd)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(owner, handle, sort_keys=True)
