"""Tree sync (_treesync) between two directories over a real authenticated channel on 127.0.0.1.

The sender (send_tree(), or one TreeSender for the passes of one migration) and the receiver (receive_tree(), as
the receiver module runs it: it takes the 'sync' message, applies it, and closes the channel when it fails) each
run in a thread, so that a sender stuck on what a hostile container put in the tree fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
from conftest import Background

from ansible_collections.ferry.runc.plugins.module_utils._channel import (
    MAX_FRAME,
    Channel,
    ChannelError,
    accept,
    connect,
)
from ansible_collections.ferry.runc.plugins.module_utils._treesync import (
    CHUNK,
    OWNER_MARKER,
    TreeSender,
    claim_tree,
    list_tree,
    plan,
    receive_tree,
    release_tree,
    send_tree,
)

SECRET = "tree secret"
IO_TIMEOUT = 5.0
MTIME = 1_600_000_000_123_456_789
AS_ROOT = os.geteuid() == 0


def connected_pair(timeout: float = IO_TIMEOUT) -> Tuple[Channel, Channel]:
    server = socket.socket(socket.AF_INET)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        accepting = Background(accept, server, SECRET, IO_TIMEOUT)
        sender = connect("127.0.0.1", server.getsockname()[1], SECRET, IO_TIMEOUT)
        receiver = accepting.result()
    finally:
        server.close()
    sender.settimeout(timeout)
    receiver.settimeout(timeout)
    return sender, receiver


def receive_one(receiver: Channel, root: Path, between: Callable[[], None]) -> Tuple[Dict[str, Any], int]:
    try:
        message = receiver.recv("sync")
        between()
        return message, receive_tree(receiver, str(root), message)
    except BaseException:
        receiver.close()
        raise


def sync(
    source: Path,
    destination: Path,
    delete_extra: bool = False,
    between: Callable[[], None] = lambda: None,
    timeout: float = IO_TIMEOUT,
    tree_sender: Optional[TreeSender] = None,
) -> Tuple[int, int]:
    """One pass (send_tree, or a pass of tree_sender) and receive_tree; returns (bytes sent, bytes received).
    between runs once the receiver has the listing, before the sender reads any file."""
    sender, receiver = connected_pair(timeout)
    receiving = Background(receive_one, receiver, destination, between)
    if tree_sender is None:
        sending = Background(send_tree, sender, str(source), "bundle", delete_extra)
    else:
        sending = Background(tree_sender.send, sender, "bundle", delete_extra)
    try:
        sent = sending.result()
        message, received = receiving.result()
    finally:
        sender.close()
        receiver.close()
    assert message["target"] == "bundle" and message["delete_extra"] is delete_extra
    return sent, received


def write(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int = MTIME) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def link(path: Path, target: str, mtime_ns: int = MTIME) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def settle_dirs(root: Path, mtime_ns: int = MTIME) -> None:
    """Give every directory under root a fixed mtime, children first (their changes touch the parent)."""
    for directory, _subdirs, _files in sorted(os.walk(root), key=lambda walked: -walked[0].count(os.sep)):
        if directory != str(root):
            os.utime(directory, ns=(mtime_ns + len(directory), mtime_ns + len(directory)))


def build_bundle(root: Path) -> None:
    """A bundle-like tree: nested dirs, empty, small and >1 MiB files, symlinks, odd modes, distinct mtimes."""
    write(root / "config.json", b'{"ociVersion": "1.0.2"}\n', 0o644, MTIME + 1)
    write(root / "rootfs/etc/hostname", b"web1\n", 0o644, MTIME + 2)
    write(root / "rootfs/etc/shadow", b"root:*:19000::::::\n", 0o600, MTIME + 3)
    write(root / "rootfs/etc/empty", b"", 0o640, MTIME + 4)
    write(root / "rootfs/bin/busybox", bytes(range(256)) * 4096 + b"tail", 0o4755, MTIME + 5)
    write(root / "rootfs/bin/one-chunk", b"\xab" * CHUNK, 0o755, MTIME + 6)
    write(root / "rootfs/var/lib/app/deep/nested/state", b"deep state", 0o600, MTIME + 7)
    link(root / "rootfs/bin/sh", "busybox", MTIME + 8)
    link(root / "rootfs/etc/localtime", "/usr/share/zoneinfo/UTC", MTIME + 9)
    link(root / "rootfs/lib", "usr/lib", MTIME + 10)
    link(root / "rootfs/config", "../config.json", MTIME + 11)
    (root / "rootfs/empty-dir").mkdir(mode=0o700)
    (root / "rootfs/tmp").mkdir()
    (root / "rootfs/tmp").chmod(0o1777)
    (root / "rootfs/var/lib/app").chmod(0o750)
    if AS_ROOT:
        os.lchown(root / "rootfs/etc/shadow", 1234, 42)
        os.lchown(root / "rootfs/var/lib/app", 1234, 1234)
        os.lchown(root / "rootfs/bin/sh", 4321, 4321)
    settle_dirs(root)


def without_link_mtimes(listing: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {
        path: {k: v for k, v in entry.items() if not (entry["kind"] == "link" and k == "mtime_ns")}
        for path, entry in listing.items()
    }


def contents(root: Path) -> Dict[str, bytes]:
    return {path: (root / path).read_bytes() for path, entry in list_tree(str(root)).items() if entry["kind"] == "file"}


def assert_same_tree(source: Path, destination: Path) -> None:
    """Same listing (symlink mtimes are checked by their own test) and same file contents."""
    assert without_link_mtimes(list_tree(str(destination))) == without_link_mtimes(list_tree(str(source)))
    assert contents(destination) == contents(source)


def snapshot(root: Path) -> Dict[str, Tuple[Any, ...]]:
    """Everything observable about the files under root, including inodes (a re-sent file gets a new one)."""
    result = {}
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else None
            result[os.path.relpath(path, root)] = (
                info.st_ino,
                info.st_mode,
                info.st_uid,
                info.st_gid,
                info.st_mtime_ns,
                data,
            )
    return result


@pytest.fixture
def trees(tmp_path: Path) -> Tuple[Path, Path]:
    source, destination = tmp_path / "source", tmp_path / "destination"
    build_bundle(source)
    return source, destination


# -- listing and plan ---------------------------------------------------------------------------------------


def test_list_tree_describes_every_kind_parents_first(trees):
    source, _destination = trees
    listing = list_tree(str(source))
    assert listing["rootfs/bin/busybox"] == {
        "kind": "file",
        "size": 256 * 4096 + 4,
        "mode": 0o4755,
        "mtime_ns": MTIME + 5,
        "uid": 0 if AS_ROOT else os.geteuid(),
        "gid": 0 if AS_ROOT else os.getegid(),
    }
    assert listing["rootfs/etc/localtime"]["kind"] == "link"
    assert listing["rootfs/etc/localtime"]["target"] == "/usr/share/zoneinfo/UTC"
    assert listing["rootfs/lib"] == dict(listing["rootfs/lib"], kind="link", target="usr/lib")
    assert listing["rootfs/tmp"]["kind"] == "dir" and listing["rootfs/tmp"]["mode"] == 0o1777
    paths = list(listing)
    for path in paths:
        parent = os.path.dirname(path)
        assert not parent or paths.index(parent) < paths.index(path), f"{path} listed before its parent"


def test_list_tree_skips_special_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    write(tmp_path / "file", b"x")
    assert set(list_tree(str(tmp_path))) == {"file"}


def entry(kind: str, **fields: Any) -> Dict[str, Any]:
    base = {"kind": kind, "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": MTIME}
    if kind == "file":
        base["size"] = 1
    return dict(base, **fields)


def test_plan_fetches_new_and_changed_files_only():
    source = {
        "same": entry("file"),
        "new": entry("file"),
        "bigger": entry("file", size=2),
        "newer": entry("file", mtime_ns=MTIME + 1),
        "mode-only": entry("file", mode=0o600),
        "dir": entry("dir"),
        "link": entry("link", target="x"),
    }
    local = {
        "same": entry("file"),
        "bigger": entry("file"),
        "newer": entry("file"),
        "mode-only": entry("file"),
        "dir": entry("dir", mode=0o700),
        "link": entry("link", target="y"),
    }
    assert plan(source, local, delete_extra=False) == (["new", "bigger", "newer"], [])


@pytest.mark.parametrize("delete_extra, removed", [(False, ["d"]), (True, ["x", "d/x", "d/sub/y", "d/sub", "d"])])
def test_plan_removes_kind_changes_always_and_extras_on_request_deepest_first(delete_extra, removed):
    source = {"d": entry("file"), "keep": entry("file")}
    local = {
        "d": entry("dir"),
        "d/sub": entry("dir"),
        "d/sub/y": entry("file"),
        "d/x": entry("file"),
        "keep": entry("file"),
        "x": entry("file"),
    }
    fetch, remove = plan(source, local, delete_extra)
    assert fetch == ["d"]
    assert remove == removed


# -- full syncs ---------------------------------------------------------------------------------------------


def test_a_tree_is_reproduced(trees):
    source, destination = trees
    sent, received = sync(source, destination)
    assert sent == received == sum(len(data) for data in contents(source).values())
    assert_same_tree(source, destination)


def test_symlink_mtimes_are_reproduced(trees):
    """list_tree reports a symlink's own mtime; the receiver must end up with the same listing, links included."""
    source, destination = trees
    sync(source, destination)
    links = {path: entry for path, entry in list_tree(str(source)).items() if entry["kind"] == "link"}
    assert {path: list_tree(str(destination))[path] for path in links} == links


def test_a_second_sync_transfers_nothing_and_changes_nothing(trees):
    source, destination = trees
    sync(source, destination)
    before = snapshot(destination)
    assert sync(source, destination) == (0, 0)
    assert snapshot(destination) == before


@pytest.mark.parametrize(
    "changed, data, mode",
    [
        ("rootfs/etc/hostname", b"web1-renamed\n", 0o644),
        ("rootfs/etc/hostname", b"web2\n", 0o644),
        ("rootfs/etc/empty", b"filled", 0o640),
    ],
    ids=["new-size", "same-size-new-mtime", "empty-file-filled"],
)
def test_after_one_file_changes_only_that_file_is_sent(trees, changed, data, mode):
    source, destination = trees
    sync(source, destination)
    write(source / changed, data, mode, MTIME + 100)
    before = snapshot(destination)
    sent, received = sync(source, destination)
    assert sent == received == len(data)
    after = snapshot(destination)
    assert sorted(path for path in before if before[path][0] != after[path][0]) == [
        changed
    ], "other files were sent again"
    assert_same_tree(source, destination)


def test_a_mode_or_owner_change_is_applied_without_sending_data(trees):
    source, destination = trees
    sync(source, destination)
    (source / "rootfs/etc/hostname").chmod(0o600)
    if AS_ROOT:
        os.lchown(source / "rootfs/etc/hostname", 777, 778)
    (source / "rootfs/tmp").chmod(0o755)
    assert sync(source, destination) == (0, 0)
    assert_same_tree(source, destination)


def test_a_changed_symlink_target_is_updated(trees):
    source, destination = trees
    sync(source, destination)
    (source / "rootfs/bin/sh").unlink()
    link(source / "rootfs/bin/sh", "/bin/dash")
    settle_dirs(source)
    assert sync(source, destination) == (0, 0)
    assert os.readlink(destination / "rootfs/bin/sh") == "/bin/dash"
    assert_same_tree(source, destination)


def add_extras(destination: Path, outside: Path) -> None:
    write(destination / "extra.txt", b"extra")
    write(destination / "rootfs/extra-dir/sub/file", b"extra")
    outside.mkdir()
    write(outside / "precious", b"keep me")
    link(destination / "rootfs/extra-link", str(outside))
    link(destination / "rootfs/bin/extra-relative", "../../../outside")


def test_extras_stay_without_delete_extra(trees, tmp_path):
    source, destination = trees
    sync(source, destination)
    add_extras(destination, tmp_path / "outside")
    assert sync(source, destination, delete_extra=False) == (0, 0)
    extras = {
        "extra.txt",
        "rootfs/extra-dir",
        "rootfs/extra-dir/sub",
        "rootfs/extra-dir/sub/file",
        "rootfs/extra-link",
        "rootfs/bin/extra-relative",
    }
    listing = list_tree(str(destination))
    assert extras <= set(listing)
    kept = {path: entry for path, entry in listing.items() if path not in extras}
    assert without_link_mtimes(kept) == without_link_mtimes(list_tree(str(source)))


def test_extras_go_with_delete_extra_and_nothing_is_removed_through_links(trees, tmp_path):
    source, destination = trees
    sync(source, destination)
    outside = tmp_path / "outside"
    add_extras(destination, outside)
    assert sync(source, destination, delete_extra=True) == (0, 0)
    assert_same_tree(source, destination)
    assert (outside / "precious").read_bytes() == b"keep me"


# -- kind changes -------------------------------------------------------------------------------------------


def file_to_dir(root: Path) -> None:
    (root / "rootfs/etc/hostname").unlink()
    write(root / "rootfs/etc/hostname/inner", b"now a directory")


def dir_to_file(root: Path) -> None:
    shutil.rmtree(root / "rootfs/var/lib/app")
    write(root / "rootfs/var/lib/app", b"now a file")


def file_to_link(root: Path) -> None:
    (root / "rootfs/etc/hostname").unlink()
    link(root / "rootfs/etc/hostname", "/etc/hostname")


def link_to_file(root: Path) -> None:
    (root / "rootfs/bin/sh").unlink()
    write(root / "rootfs/bin/sh", b"#!/bin/busybox sh\n")


def dir_to_link(root: Path) -> None:
    shutil.rmtree(root / "rootfs/var/lib/app")
    link(root / "rootfs/var/lib/app", "/srv/app")


def link_to_dir(root: Path) -> None:
    (root / "rootfs/lib").unlink()
    write(root / "rootfs/lib/libc.so", b"\x7fELF")


@pytest.mark.parametrize("change", [file_to_dir, dir_to_file, file_to_link, link_to_file, dir_to_link, link_to_dir])
@pytest.mark.parametrize("delete_extra", [False, True], ids=["keep-extra", "delete-extra"])
def test_a_kind_change_is_handled(trees, change, delete_extra):
    source, destination = trees
    sync(source, destination)
    change(source)
    settle_dirs(source)
    sync(source, destination, delete_extra=delete_extra)
    assert_same_tree(source, destination)


# -- escapes ------------------------------------------------------------------------------------------------


def test_a_directory_replaced_by_an_outside_symlink_is_not_written_through(trees, tmp_path):
    source, destination = trees
    sync(source, destination)
    outside = tmp_path / "outside"
    write(outside / "state", b"outside state", 0o600, MTIME - 1)
    write(outside / "deep/nested/state", b"outside deep", 0o600, MTIME - 1)
    os.utime(outside, ns=(MTIME - 1, MTIME - 1))
    before = snapshot(outside)
    shutil.rmtree(destination / "rootfs/var/lib/app")
    os.symlink(outside, destination / "rootfs/var/lib/app")
    write(source / "rootfs/var/lib/app/deep/nested/state", b"changed state", 0o600, MTIME + 200)
    settle_dirs(source)
    sync(source, destination)
    assert snapshot(outside) == before
    assert os.stat(outside).st_mtime_ns == MTIME - 1
    assert not (destination / "rootfs/var/lib/app").is_symlink()
    assert_same_tree(source, destination)


def fake_sync(
    destination: Path, *listings: Dict[str, Dict[str, Any]], timeout: float = 2.0
) -> Tuple[Optional[BaseException], list]:
    """Offer a hand-made listing (no files to send), in one batch per argument, to receive_tree; returns its error
    and what the sender got."""
    sender, receiver = connected_pair(timeout)
    receiving = Background(receive_one, receiver, destination, lambda: None)
    answers = []
    try:
        for number, listing in enumerate(listings, 1):
            sender.send("sync", target="bundle", listing=listing, delete_extra=False, more=number < len(listings))
        try:
            answers.append(sender.recv("want"))
            answers.append(sender.recv("ok"))
        except ChannelError as exc:
            answers.append(exc)
        try:
            receiving.result()
            error = None
        except ChannelError as exc:
            error = exc
    finally:
        sender.close()
        receiver.close()
    return error, answers


@pytest.mark.parametrize(
    "relative, kind",
    [
        ("../outside/x", "file"),
        ("{outside}/abs", "dir"),
        ("rootfs/../../outside/l", "link"),
        ("a/b/../../../outside/d", "dir"),
    ],
    ids=["dotdot-file", "absolute-dir", "inner-dotdot-link", "deep-dotdot-dir"],
)
def test_a_listing_leaving_the_root_is_refused(tmp_path, relative, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    relative = relative.format(outside=outside)
    listing = {"rootfs": entry("dir"), relative: entry(kind, target="/etc", size=0)}
    error, answers = fake_sync(tmp_path / "root", listing)
    assert isinstance(error, ChannelError)
    assert str(error) == f"refusing path {relative!r} outside the target directory"
    assert list(outside.iterdir()) == []
    assert not any(
        isinstance(answer, dict) and answer["type"] == "want" for answer in answers
    ), "the receiver asked for files"


def test_a_listing_that_puts_an_entry_under_one_of_its_own_symlinks_is_refused(tmp_path):
    """'l/victim' before 'l' -> outside: the directory made for l/victim is replaced by the link, and the
    metadata pass must not then chmod/chown/utime the outside file through it."""
    outside = tmp_path / "outside"
    write(outside / "victim", b"secret", 0o600, MTIME - 1)
    before = snapshot(outside)
    listing = {
        "l/victim": entry("dir", mode=0o777, uid=4242, gid=4242, mtime_ns=MTIME),
        "l": entry("link", target=str(outside)),
    }
    error, _answers = fake_sync(tmp_path / "root", listing)
    assert snapshot(outside) == before, "receive_tree changed a file outside its root"
    assert isinstance(error, ChannelError)


def test_a_listing_that_puts_a_file_under_one_of_its_own_symlinks_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    listing = {"l": entry("link", target=str(outside)), "l/planted": entry("file", size=0)}
    error, _answers = fake_sync(tmp_path / "root", listing)
    assert isinstance(error, ChannelError)
    assert str(error) == "refusing 'l/planted': its parent 'l' is not a directory of the listing"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("asked", ["rootfs", "rootfs/bin/sh", "../escape", "missing"])
def test_the_sender_refuses_to_send_what_is_not_one_of_its_files(trees, asked):
    source, _destination = trees
    sender, receiver = connected_pair()

    def fake_receiver() -> None:
        receiver.recv("sync")
        receiver.send("want", paths=[asked])

    answering = Background(fake_receiver)
    try:
        with pytest.raises(ChannelError, match=f"the receiver asked for {asked!r}, which is not a file of {source}"):
            send_tree(sender, str(source), "bundle", False)
        answering.result()
    finally:
        sender.close()
        receiver.close()


# -- a tree that changes while it is sent (the first pass runs while the container runs) -------------------


def grow(path: Path) -> None:
    write(path, path.read_bytes() * 3, 0o644, MTIME + 300)


def shrink(path: Path) -> None:
    write(path, path.read_bytes()[:2], 0o644, MTIME + 300)


def vanish(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("change", [grow, shrink, vanish])
def test_a_file_changing_during_the_sync_does_not_break_it_and_the_next_pass_catches_up(trees, change):
    source, destination = trees
    sync(source, destination, between=lambda: change(source / "rootfs/etc/shadow"), timeout=2.0)
    settle_dirs(source)
    sync(source, destination, delete_extra=True, timeout=2.0)
    assert_same_tree(source, destination)


def test_a_tree_whose_listing_is_larger_than_one_frame_syncs(tmp_path):
    """A big root filesystem (some 50 000 entries, as in a common distribution image) lists to more than
    MAX_FRAME of JSON, and on the first pass the list of wanted files is nearly as long.

    To stay fast, a few hundred long paths stand in for many files: control characters take one byte in a file
    name and six in JSON (\\u0001).
    """
    source, destination = tmp_path / "source", tmp_path / "destination"
    deep = source.joinpath(*[f"{level:02d}" + "\x01" * 250 for level in range(14)])
    deep.mkdir(parents=True)
    for number in range(400):
        (deep / (f"{number:04d}" + "\x01" * 200)).write_bytes(b"x")
    listing = list_tree(str(source))
    assert len(json.dumps(listing)) > MAX_FRAME
    assert len(json.dumps([path for path, entry in listing.items() if entry["kind"] == "file"])) > MAX_FRAME
    sent, received = sync(source, destination)
    assert sent == received == 400
    assert_same_tree(source, destination)


# -- a hostile container: it changes its tree while the sender reads it -------------------------------------

# A file of the source host (its /etc/shadow) of the same size as the container's rootfs/etc/shadow.
HOST_SECRET = b"host-secret-shadow\n"


@pytest.fixture
def host_etc(tmp_path: Path) -> Path:
    write(tmp_path / "host-etc/shadow", HOST_SECRET, 0o600)
    return tmp_path / "host-etc"


def swap_for_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    os.symlink(target, path)


def holding(root: Path, data: bytes) -> list:
    """The regular files under root whose content contains data."""
    found = []
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink() and data in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize("swapped", ["rootfs/etc", "rootfs/etc/shadow"], ids=["parent-directory", "file"])
def test_a_symlink_swapped_in_between_the_listing_and_the_read_is_not_read_through(trees, host_etc, swapped):
    source, destination = trees
    target = host_etc if swapped == "rootfs/etc" else host_etc / "shadow"
    tree_sender = TreeSender(str(source))
    sync(source, destination, between=lambda: swap_for_link(source / swapped, target), tree_sender=tree_sender)
    assert holding(destination, HOST_SECRET) == [], "the sender read a file outside the tree"
    sync(source, destination, delete_extra=True, tree_sender=tree_sender)
    assert holding(destination, HOST_SECRET) == []
    assert os.readlink(destination / swapped) == str(target)
    assert_same_tree(source, destination)


def test_a_directory_swapped_for_a_symlink_during_the_listing_is_not_entered(trees, host_etc, monkeypatch):
    """The walk finds rootfs/etc a directory (the first stat of it) and only then goes in: the swap comes between."""
    source, _destination = trees
    swapped = []

    def swapping_after(look: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def look_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            info = look(path, *args, **kwargs)
            if not swapped and os.path.basename(str(path)) == "etc":
                swapped.append(path)
                swap_for_link(source / "rootfs/etc", host_etc)
            return info

        return look_then_swap

    monkeypatch.setattr(os, "stat", swapping_after(os.stat))
    monkeypatch.setattr(os, "lstat", swapping_after(os.lstat))
    listing = list_tree(str(source))
    assert swapped, "the swap did not happen"
    assert [path for path in listing if path.startswith("rootfs/etc/")] == []


def test_a_stolen_file_put_back_as_a_decoy_of_the_same_size_and_mtime_is_replaced_in_the_frozen_pass(
    trees, host_etc, tmp_path
):
    """The running pass: rootfs/etc becomes a symlink to the host's /etc between the listing and the read. Then the
    container puts its directory back, with a decoy shadow of the listed size and mtime, before the frozen pass."""
    source, destination = trees
    etc, hidden = source / "rootfs/etc", tmp_path / "hidden-etc"
    listed = os.lstat(etc / "shadow")
    tree_sender = TreeSender(str(source))

    def swap() -> None:
        os.rename(etc, hidden)
        os.symlink(host_etc, etc)

    sync(source, destination, delete_extra=True, between=swap, tree_sender=tree_sender)
    etc.unlink()
    os.rename(hidden, etc)
    decoy = b"decoy-of-same-size\n"
    write(etc / "shadow", decoy, 0o600, listed.st_mtime_ns)
    settle_dirs(source)
    sync(source, destination, delete_extra=True, tree_sender=tree_sender)
    assert holding(destination, HOST_SECRET) == []
    assert (destination / "rootfs/etc/shadow").read_bytes() == decoy
    assert_same_tree(source, destination)


def test_a_file_rewritten_with_the_same_size_and_a_forged_mtime_is_sent_again(trees):
    source, destination = trees
    tree_sender = TreeSender(str(source))
    sync(source, destination, tree_sender=tree_sender)
    shadow = source / "rootfs/etc/shadow"
    listed = os.lstat(shadow)
    rewritten = b"root:$6$new:19001:\n"
    write(shadow, rewritten, 0o600, listed.st_mtime_ns)
    assert os.lstat(shadow).st_size == listed.st_size
    assert sync(source, destination, tree_sender=tree_sender) == (len(rewritten), len(rewritten))
    assert (destination / "rootfs/etc/shadow").read_bytes() == rewritten


def test_a_second_pass_of_one_sender_sends_nothing_when_nothing_changed(trees):
    source, destination = trees
    tree_sender = TreeSender(str(source))
    sync(source, destination, tree_sender=tree_sender)
    before = snapshot(destination)
    assert sync(source, destination, tree_sender=tree_sender) == (0, 0)
    assert snapshot(destination) == before


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def make_random_device(path: Path) -> None:
    """A device node of the host's /dev/urandom: a container allowed to mknod (not to open) can make one."""
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 9))


ROOT_ONLY = pytest.mark.skipif(not AS_ROOT, reason="mknod needs root")


@pytest.mark.parametrize(
    "make", [make_fifo, make_socket, pytest.param(make_random_device, marks=ROOT_ONLY)], ids=["fifo", "socket", "device"]
)
def test_a_device_socket_or_fifo_is_skipped_and_reported(trees, make):
    source, destination = trees
    make(source / "rootfs/special")
    settle_dirs(source)
    tree_sender = TreeSender(str(source))
    sync(source, destination, tree_sender=tree_sender)
    assert tree_sender.skipped == ["rootfs/special"]
    assert not os.path.lexists(destination / "rootfs/special")
    assert_same_tree(source, destination)


@pytest.mark.parametrize("make", [make_fifo, pytest.param(make_random_device, marks=ROOT_ONLY)], ids=["fifo", "device"])
def test_a_fifo_or_device_swapped_in_between_the_listing_and_the_read_is_not_read(trees, make):
    """Opening a FIFO for reading blocks until a writer comes; a device's data is the host's."""
    source, destination = trees
    shadow = source / "rootfs/etc/shadow"
    size = shadow.stat().st_size

    def swap() -> None:
        shadow.unlink()
        make(shadow)

    tree_sender = TreeSender(str(source))
    sync(source, destination, between=swap, tree_sender=tree_sender, timeout=2.0)
    assert (destination / "rootfs/etc/shadow").read_bytes() == bytes(size)
    sync(source, destination, delete_extra=True, tree_sender=tree_sender)
    assert tree_sender.skipped == ["rootfs/etc/shadow"]
    assert not os.path.lexists(destination / "rootfs/etc/shadow")


# -- a hostile peer: a listing or data that the real sender would not send ----------------------------------


def test_a_child_listed_before_its_parent_symlink_changes_nothing_outside(tmp_path):
    """'x/y' (a directory) in a first batch, 'x' (a symlink to an outside directory) in the next: the receiver used
    to make x/y, replace x by the link, and then chmod and chown the outside y through it."""
    outside = tmp_path / "outside"
    (outside / "y").mkdir(parents=True, mode=0o700)
    os.utime(outside / "y", ns=(MTIME - 1, MTIME - 1))
    before = snapshot(outside)
    error, _answers = fake_sync(
        tmp_path / "root",
        {"x/y": entry("dir", mode=0o777, uid=4242, gid=4242)},
        {"x": entry("link", target=str(outside))},
    )
    assert snapshot(outside) == before, "receive_tree changed a directory outside its root"
    assert isinstance(error, ChannelError)
    assert str(error) == "refusing 'x/y': its parent 'x' is not a directory of the listing"
    assert not (tmp_path / "root").exists(), "the receiver changed something before refusing"


@pytest.mark.parametrize(
    "relative, listed",
    [
        ("a//b", entry("file")),
        ("./a", entry("dir")),
        (OWNER_MARKER, entry("file", size=0)),
        ("device", entry("special")),
        ("sizeless", dict(entry("dir"), kind="file")),
        ("link", entry("link", target=7)),
    ],
    ids=["empty-component", "dot-component", "owner-marker", "unknown-kind", "file-without-size", "link-without-target"],
)
def test_a_listing_with_an_odd_or_malformed_entry_is_refused_before_anything_changes(tmp_path, relative, listed):
    error, _answers = fake_sync(tmp_path / "root", {relative: listed})
    assert isinstance(error, ChannelError)
    assert str(error).startswith(f"refusing {relative!r}") or str(error).startswith(f"refusing path {relative!r}")
    assert not (tmp_path / "root").exists()


def test_a_file_whose_digest_differs_from_the_senders_is_not_put_in_place(tmp_path):
    sender, receiver = connected_pair(2.0)
    receiving = Background(receive_one, receiver, tmp_path / "root", lambda: None)
    try:
        sender.send("sync", target="bundle", listing={"f": entry("file", size=4)}, delete_extra=False)
        assert sender.recv("want")["paths"] == ["f"]
        sender.send_bytes(b"data")
        sender.send("eof", path="f", digest=hashlib.blake2b(b"something else").hexdigest())
        with pytest.raises(ChannelError, match="'?f'?: the digest of the data received differs from the sender's"):
            receiving.result()
    finally:
        sender.close()
        receiver.close()
    assert os.listdir(tmp_path / "root") == []


def test_the_owner_marker_is_neither_listed_nor_sent_nor_removed(trees):
    source, destination = trees
    destination.mkdir()
    (destination / OWNER_MARKER).write_text(json.dumps({"container": "web1", "migration": "m2"}))
    (source / OWNER_MARKER).write_text(json.dumps({"container": "web1", "migration": "m1"}))
    assert OWNER_MARKER not in list_tree(str(source))
    sync(source, destination, delete_extra=True)
    assert json.loads((destination / OWNER_MARKER).read_text()) == {"container": "web1", "migration": "m2"}
    assert_same_tree(source, destination)


# -- claim_tree and release_tree: the destination's bundle directory ----------------------------------------

OWNER = {"container": "web1", "migration": "m1"}


def test_claim_tree_creates_a_marked_directory_that_release_tree_removes(tmp_path):
    path = tmp_path / "bundles/web1"
    assert claim_tree(str(path), OWNER) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert json.loads((path / OWNER_MARKER).read_text()) == OWNER
    write(path / "rootfs/etc/hostname", b"web1\n")
    release_tree(str(path), created=True)
    assert not path.exists()
    assert path.parent.is_dir()


def test_claim_tree_accepts_an_earlier_copy_of_the_same_container_which_release_tree_keeps(tmp_path):
    path = tmp_path / "web1"
    claim_tree(str(path), OWNER)
    write(path / "rootfs/etc/hostname", b"web1\n")
    assert claim_tree(str(path), {"container": "web1", "migration": "m2"}) is False
    release_tree(str(path), created=False)
    assert (path / "rootfs/etc/hostname").read_bytes() == b"web1\n"


def marked_for_another_container(path: Path) -> None:
    claim_tree(str(path), {"container": "db1", "migration": "m0"})


def unreadable_marker(path: Path) -> None:
    write(path / OWNER_MARKER, b"not json")


def empty_directory(path: Path) -> None:
    path.mkdir()


def foreign_directory(path: Path) -> None:
    write(path / "rootfs/etc/hostname", b"someone else's\n")


def symlink_to_a_marked_directory(path: Path) -> None:
    claim_tree(str(path.parent / "elsewhere"), OWNER)
    os.symlink(path.parent / "elsewhere", path)


def regular_file(path: Path) -> None:
    write(path, b"a file")


@pytest.mark.parametrize(
    "make",
    [
        marked_for_another_container,
        unreadable_marker,
        empty_directory,
        foreign_directory,
        symlink_to_a_marked_directory,
        regular_file,
    ],
)
def test_claim_tree_refuses_anything_else_and_leaves_it_alone(tmp_path, make):
    path = tmp_path / "web1"
    make(path)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=f"^{path} exists and holds something not made by ferry for container web1"):
        claim_tree(str(path), OWNER)
    assert snapshot(tmp_path) == before


def test_release_tree_removes_symlinks_not_what_they_point_to(tmp_path):
    path = tmp_path / "web1"
    claim_tree(str(path), OWNER)
    outside = tmp_path / "outside"
    write(outside / "precious", b"keep me")
    os.symlink(outside, path / "dir-link")
    os.symlink(outside / "precious", path / "file-link")
    os.mkfifo(path / "fifo")
    release_tree(str(path), created=True)
    assert not os.path.lexists(path)
    assert (outside / "precious").read_bytes() == b"keep me"
