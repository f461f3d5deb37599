"""Checksum manifests of image directories (_manifest)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from ansible_collections.ferry.runc.plugins.module_utils import _manifest
from ansible_collections.ferry.runc.plugins.module_utils._manifest import MANIFEST_NAME

BIG = bytes(range(256)) * 8192 + b"odd tail"  # 2 MiB and a bit: more than one read block


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A CRIU-like image directory with the things a manifest must leave out."""
    directory = tmp_path / "final"
    directory.mkdir()
    (directory / "pages-1.img").write_bytes(BIG)
    (directory / "pagemap-1.img").write_bytes(b"\x01\x02\x03")
    (directory / "inventory.img").write_bytes(b"inventory")
    (directory / "empty.img").write_bytes(b"")
    (directory / "dump.log").write_text("(00.000001) Dumping finished successfully\n")
    (directory / "restore.log").write_text("")
    (directory / "sub").mkdir()
    (directory / "sub/inside.img").write_bytes(b"in a subdirectory")
    (tmp_path / "pre1").mkdir()
    os.symlink("../pre1", directory / "parent")
    os.symlink("inventory.img", directory / "inventory-link.img")
    return directory


def digest(data: bytes) -> str:
    return hashlib.blake2b(data).hexdigest()


def stored(directory: Path) -> dict:
    return json.loads((directory / MANIFEST_NAME).read_text())


def check(directory: Path, manifest: dict) -> list[str]:
    """A migration's check: the destination reads back what the source's manifest names, the source compares."""
    found, problems = _manifest.read_back(str(directory), {name: entry["size"] for name, entry in manifest.items()})
    return problems + _manifest.mismatches({name: manifest[name] for name in found}, found)


def test_build_covers_regular_files_only(images):
    assert _manifest.build(str(images)) == {
        "empty.img": {"size": 0, "blake2b": digest(b"")},
        "inventory.img": {"size": 9, "blake2b": digest(b"inventory")},
        "pagemap-1.img": {"size": 3, "blake2b": digest(b"\x01\x02\x03")},
        "pages-1.img": {"size": len(BIG), "blake2b": digest(BIG)},
    }


def test_file_digest_is_blake2b_across_blocks(images):
    assert _manifest.file_digest(str(images / "pages-1.img")) == digest(BIG)


def test_write_stores_the_manifest_readable_by_root_only(images):
    written = _manifest.write(str(images))
    path = images / MANIFEST_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == written == _manifest.build(str(images))
    assert stored(images) == written
    assert sorted(os.listdir(images)) == sorted(
        [
            "pages-1.img",
            "pagemap-1.img",
            "inventory.img",
            "empty.img",
            "dump.log",
            "restore.log",
            "sub",
            "parent",
            "inventory-link.img",
            MANIFEST_NAME,
        ]
    ), "write() left a temporary file behind"


def test_write_makes_the_manifest_0600_whatever_the_umask(images):
    old = os.umask(0)
    try:
        _manifest.write(str(images))
    finally:
        os.umask(old)
    assert stat.S_IMODE((images / MANIFEST_NAME).stat().st_mode) == 0o600


def test_rewriting_replaces_a_looser_manifest(images):
    (images / MANIFEST_NAME).write_text("{}")
    (images / MANIFEST_NAME).chmod(0o644)
    written = _manifest.write(str(images))
    assert stat.S_IMODE((images / MANIFEST_NAME).stat().st_mode) == 0o600
    assert stored(images) == written


def test_the_manifest_and_logs_are_not_covered(images):
    _manifest.write(str(images))
    covered = _manifest.build(str(images))
    assert MANIFEST_NAME not in covered
    assert not [name for name in covered if name.endswith(".log")]
    (images / "dump.log").write_text("rewritten by a later run\n")
    (images / "page-server.log").write_text("new log\n")
    assert check(images, stored(images)) == []


def test_a_check_accepts_an_untouched_directory_and_a_copy_of_it(images, tmp_path):
    manifest = _manifest.write(str(images))
    assert check(images, manifest) == []
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in manifest:
        (copy / name).write_bytes((images / name).read_bytes())
    assert check(copy, stored(images)) == []


def test_a_check_reports_each_problem_on_its_own_line(images):
    manifest = _manifest.write(str(images))
    (images / "inventory.img").unlink()
    (images / "pagemap-1.img").write_bytes(b"\x01\x02\x03\x04\x05")
    (images / "pages-1.img").write_bytes(BIG[:-1] + b"X")
    assert check(images, manifest) == [
        "inventory.img: missing",
        "pagemap-1.img: 5 bytes, expected 3",
        "pages-1.img: checksum mismatch",
    ]


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda path: path.unlink(), "missing"),
        (lambda path: (path.unlink(), path.mkdir()), "missing"),
        (lambda path: path.write_bytes(b""), "0 bytes, expected 9"),
        (lambda path: path.write_bytes(b"inventorY"), "checksum mismatch"),
    ],
    ids=["deleted", "replaced-by-a-directory", "truncated", "one-byte-changed"],
)
def test_a_check_names_the_file_and_the_problem(images, damage, problem):
    manifest = _manifest.build(str(images))
    damage(images / "inventory.img")
    assert check(images, manifest) == [f"inventory.img: {problem}"]


def test_a_check_tells_an_unreadable_file_from_a_missing_one(images, monkeypatch: pytest.MonkeyPatch):
    manifest = _manifest.build(str(images))
    real_lstat = os.lstat

    def stale_share(path, *args, **kwargs):
        if str(path).endswith("inventory.img"):
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", stale_share)
    assert check(images, manifest) == [f"inventory.img: unreadable ({os.strerror(errno.ESTALE)})"]


def test_a_check_of_an_empty_manifest_is_clean(tmp_path):
    assert _manifest.build(str(tmp_path)) == {}
    assert check(tmp_path, {}) == []


def test_read_back_hashes_what_the_sizes_name(images):
    sizes = _manifest.sizes(str(images))
    assert sizes == {name: entry["size"] for name, entry in _manifest.build(str(images)).items()}
    found, problems = _manifest.read_back(str(images), sizes)
    assert problems == []
    assert found == _manifest.build(str(images))


def test_read_back_names_missing_and_resized_files_and_hashes_none_of_them(images):
    sizes = dict(_manifest.sizes(str(images)), **{"gone.img": 4})
    sizes["pagemap-1.img"] = 2
    found, problems = _manifest.read_back(str(images), sizes)
    assert problems == ["gone.img: missing", "pagemap-1.img: 3 bytes, expected 2"]
    assert "gone.img" not in found and "pagemap-1.img" not in found


def test_mismatches_names_each_file_that_differs_or_was_not_read_back():
    expected = {"a.img": {"size": 1, "blake2b": "x"}, "b.img": {"size": 1, "blake2b": "y"}, "c.img": {"size": 1, "blake2b": "z"}}
    found = {"a.img": {"size": 1, "blake2b": "x"}, "b.img": {"size": 1, "blake2b": "other"}}
    assert _manifest.mismatches(expected, found) == ["b.img: checksum mismatch", "c.img: not read back"]
    assert _manifest.mismatches(expected, expected) == []


@pytest.mark.parametrize("name", ["../outside", "sub/pages-1.img", "..", ".", ""])
def test_read_back_refuses_a_name_that_leaves_the_directory(images, tmp_path, name):
    (tmp_path / "outside").write_bytes(b"x")
    found, problems = _manifest.read_back(str(images), {name: 1})
    assert found == {} and problems == [f"{name!r}: not a file name of the image directory"]


def test_read_back_does_not_follow_a_symbolic_link(images, tmp_path):
    (tmp_path / "secret").write_bytes(b"secret")
    (images / "pages-9.img").symlink_to(tmp_path / "secret")
    found, problems = _manifest.read_back(str(images), {"pages-9.img": 6})
    assert found == {} and problems == ["pages-9.img: missing"]


def test_a_copy_ignoring_the_manifest_files_leaves_out_the_manifest_being_written(images, tmp_path):
    _manifest.write(str(images))
    (images / (MANIFEST_NAME + ".tmp")).write_text("{")
    shutil.copytree(images, tmp_path / "copy", symlinks=True, ignore=_manifest.manifest_files)
    assert sorted(os.listdir(tmp_path / "copy")) == sorted(set(os.listdir(images)) - {MANIFEST_NAME, MANIFEST_NAME + ".tmp"})
