# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inspect a CRIU image directory: what kind of dump it holds, its size, and clearing it for a new dump."""

from __future__ import annotations

import os
import stat

# Every dump and pre-dump writes an inventory; only a full dump (the one a restore needs) has a process tree.
INVENTORY_IMAGE = "inventory.img"
PROCESS_TREE_IMAGE = "pstree.img"

DUMP_KIND_NONE = "none"
DUMP_KIND_PRE_DUMP = "pre-dump"
DUMP_KIND_DUMP = "dump"


def dump_kind(path: str) -> str:
    """Return "none", "pre-dump" or "dump" for the images in path ("none" when path does not exist)."""
    if not os.path.isfile(os.path.join(path, INVENTORY_IMAGE)):
        return DUMP_KIND_NONE
    if os.path.isfile(os.path.join(path, PROCESS_TREE_IMAGE)):
        return DUMP_KIND_DUMP
    return DUMP_KIND_PRE_DUMP


def holds_dump(path: str) -> bool:
    """Whether path holds the images of a dump or a pre-dump."""
    return dump_kind(path) != DUMP_KIND_NONE


def dir_size(path: str) -> int:
    """Total size in bytes of the regular files under path; symbolic links (such as CRIU's parent link) are not followed."""
    total = 0
    for directory, _subdirs, files in os.walk(path):
        for name in files:
            status = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(status.st_mode):
                total += status.st_size
    return total


def clear_dump(path: str) -> list[str]:
    """Remove the files and symbolic links directly in path (images, logs, the parent link); keep subdirectories.

    Returns the names removed, sorted.
    """
    removed = []
    for entry in os.scandir(path):
        if entry.is_symlink() or entry.is_file():
            os.unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)
