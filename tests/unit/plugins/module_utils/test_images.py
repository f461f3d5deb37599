"""Image directory inspection (_images): what a directory holds, its size, clearing it for a new dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._images import clear_dump, dir_size, dump_kind, holds_dump


def make(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")
    return directory


@pytest.mark.parametrize(
    ("names", "kind", "holds"),
    [
        ((), "none", False),
        (("dump.log", "stats-dump"), "none", False),
        (("inventory.img", "pagemap-1.img", "pages-1.img"), "pre-dump", True),
        (("inventory.img", "pstree.img", "core-1.img"), "dump", True),
    ],
    ids=["empty", "logs-only", "pre-dump", "dump"],
)
def test_the_kind_of_dump_comes_from_the_inventory_and_the_process_tree(tmp_path: Path, names, kind, holds):
    images = make(tmp_path / "images", *names)
    assert dump_kind(str(images)) == kind
    assert holds_dump(str(images)) is holds


def test_a_missing_directory_holds_no_dump(tmp_path: Path):
    assert dump_kind(str(tmp_path / "missing")) == "none"


def test_the_size_counts_regular_files_in_subdirectories_but_not_what_links_point_to(tmp_path: Path):
    parent = tmp_path / "pre1"
    parent.mkdir()
    (parent / "pages-1.img").write_bytes(b"x" * 4096)
    final = tmp_path / "final"
    (final / "sub").mkdir(parents=True)
    (final / "pages-1.img").write_bytes(b"y" * 8192)
    (final / "inventory.img").write_bytes(b"z" * 18)
    (final / "sub" / "tmpfs.img").write_bytes(b"w" * 100)
    (final / "parent").symlink_to("../pre1")
    assert dir_size(str(final)) == 8192 + 18 + 100


def test_clearing_removes_files_and_links_but_keeps_subdirectories(tmp_path: Path):
    final = make(tmp_path / "final", "inventory.img", "pages-1.img", "dump.log")
    (final / "parent").symlink_to("../pre1")
    make(final / "keep", "notes.txt")
    assert clear_dump(str(final)) == ["dump.log", "inventory.img", "pages-1.img", "parent"]
    assert sorted(path.name for path in final.iterdir()) == ["keep"]
    assert (final / "keep" / "notes.txt").exists()
