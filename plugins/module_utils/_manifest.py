# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checksum manifests of image directories: written after a dump, compared with the destination's as it reads them.

The digest is BLAKE2b-512 (coreutils' b2sum): cryptographic like SHA-256, and about four times faster where the CPU
has no SHA instructions (105 against 26 MiB/s in the emulated lab), which matters inside the frozen window."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Any, Dict, Mapping

MANIFEST_NAME = "ferry-manifest.json"
_MANIFEST_FILES = (MANIFEST_NAME, MANIFEST_NAME + ".tmp")
DIGEST = "blake2b"
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


def file_digest(path: str) -> str:
    digest = new_digest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_digest() -> Any:
    return hashlib.new(DIGEST)


def build(directory: str) -> Manifest:
    """Size and digest of every regular file a restore reads from this directory (subdirectories excluded)."""
    return {
        name: {"size": os.path.getsize(os.path.join(directory, name)), DIGEST: file_digest(os.path.join(directory, name))}
        for name in _covered_files(directory)
    }


def write(directory: str) -> Manifest:
    """Build the manifest and store it in the directory, readable by root only."""
    manifest = build(directory)
    path = os.path.join(directory, MANIFEST_NAME)
    temporary = os.path.join(directory, _MANIFEST_FILES[1])
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)
    return manifest


def manifest_files(_directory: str, names: list[str]) -> list[str]:
    """For shutil.copytree's ignore: the manifest's files among names, which the sender may be writing meanwhile."""
    return [name for name in names if name in _MANIFEST_FILES]


def sizes(directory: str) -> Dict[str, int]:
    """The size of every file the manifest covers: what the receiver reads back and hashes."""
    return {name: os.path.getsize(os.path.join(directory, name)) for name in _covered_files(directory)}


def read_back(directory: str, expected_sizes: Mapping[str, int]) -> tuple[Manifest, list[str]]:
    """The manifest of this directory's copy of the files named in expected_sizes, each hashed as it is read once,
    and every way the copy differs in presence or size. The names come from the other host: one that is not a plain
    file name, or a symbolic link, is never followed."""
    found: Manifest = {}
    problems = []
    for name, expected_size in sorted(expected_sizes.items()):
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            problems.append(f"{name!r}: not a file name of the image directory")
            continue
        path = os.path.join(directory, name)
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        except OSError as exc:
            # A share that went away shows here (ESTALE, EACCES, EIO), not as missing files.
            problems.append(f"{name}: unreadable ({exc.strerror})")
            continue
        if not stat.S_ISREG(status.st_mode):
            problems.append(f"{name}: missing")
        elif status.st_size != expected_size:
            problems.append(f"{name}: {status.st_size} bytes, expected {expected_size}")
        else:
            found[name] = {"size": status.st_size, DIGEST: file_digest(path)}
    return found, problems


def mismatches(expected: Manifest, found: Manifest) -> list[str]:
    """Every file of expected whose entry in found is absent or differs, as readable lines."""
    return [f"{name}: not read back" if name not in found else f"{name}: checksum mismatch"
            for name in sorted(expected) if found.get(name) != expected[name]]
