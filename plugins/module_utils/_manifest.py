# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checksum manifests of image directories: written after a dump, verified before a restore."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Dict

MANIFEST_NAME = "ferry-manifest.json"
# CRIU's logs and our own manifest are not inputs of a restore; everything else in the directory is.
_NOT_COVERED_SUFFIXES = (".log",)

Manifest = Dict[str, Dict[str, object]]


def _covered_files(directory: str) -> list[str]:
    names = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name == MANIFEST_NAME or name.endswith(_NOT_COVERED_SUFFIXES):
            continue
        if os.path.isfile(path) and not os.path.islink(path):
            names.append(name)
    return names


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(directory: str) -> Manifest:
    """Size and SHA-256 of every regular file a restore reads from this directory (subdirectories excluded)."""
    return {
        name: {"size": os.path.getsize(os.path.join(directory, name)), "sha256": file_sha256(os.path.join(directory, name))}
        for name in _covered_files(directory)
    }


def write(directory: str) -> Manifest:
    """Build the manifest and store it in the directory, readable by root only."""
    manifest = build(directory)
    path = os.path.join(directory, MANIFEST_NAME)
    descriptor = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    return manifest


def read(directory: str) -> Manifest:
    with open(os.path.join(directory, MANIFEST_NAME)) as handle:
        return json.load(handle)


def verify(directory: str, manifest: Manifest) -> list[str]:
    """Every way the directory differs from the manifest, as readable lines (empty when it matches)."""
    problems = []
    for name, expected in sorted(manifest.items()):
        path = os.path.join(directory, name)
        try:
            status = os.stat(path)
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        except OSError as exc:
            # A share that went away shows here (ESTALE, EACCES, EIO), not as missing files.
            problems.append(f"{name}: unreadable ({exc.strerror})")
            continue
        size = status.st_size
        if not stat.S_ISREG(status.st_mode):
            problems.append(f"{name}: missing")
        elif size != expected["size"]:
            problems.append(f"{name}: {size} bytes, expected {expected['size']}")
        elif file_sha256(path) != expected["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    return problems
