# Copyright: ferry.runc contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decode CRIU's stats-dump and stats-restore files with the standard library alone.

A stats file holds two little-endian 32-bit magics (IMG_SERVICE_MAGIC, STATS_MAGIC from criu/include/magic.h),
a 32-bit length and one protobuf ``stats_entry`` message (images/stats.proto) of that length, whose field 1 is a
``dump_stats_entry`` and field 2 a ``restore_stats_entry``. Times are in microseconds, as CRIU stores them.
"""

from __future__ import annotations

import struct

IMG_SERVICE_MAGIC = 0x55105940
STATS_MAGIC = 0x57093306

STATS_ENTRY_DUMP = 1
STATS_ENTRY_RESTORE = 2

DUMP_STATS_FIELDS = {
    1: "freezing_time",
    2: "frozen_time",
    3: "memdump_time",
    4: "memwrite_time",
    5: "pages_scanned",
    6: "pages_skipped_parent",
    7: "pages_written",
    8: "irmap_resolve",
    9: "pages_lazy",
    10: "page_pipes",
    11: "page_pipe_bufs",
    12: "shpages_scanned",
    13: "shpages_skipped_parent",
    14: "shpages_written",
}

RESTORE_STATS_FIELDS = {
    1: "pages_compared",
    2: "pages_skipped_cow",
    3: "forking_time",
    4: "restore_time",
    5: "pages_restored",
}

# stats.proto has only integers (varints) and the two nested messages (length-delimited).
WIRE_VARINT = 0
WIRE_LENGTH_DELIMITED = 2
HEADER = struct.Struct("<III")


class StatsFormatError(ValueError):
    """The file is not a CRIU stats image, or it is truncated."""


def read_dump_stats(path: str) -> dict[str, int]:
    """Return the dump statistics of a stats-dump file (written by dump and pre-dump)."""
    return _read_stats(path, STATS_ENTRY_DUMP, DUMP_STATS_FIELDS)


def read_restore_stats(path: str) -> dict[str, int]:
    """Return the restore statistics of a stats-restore file."""
    return _read_stats(path, STATS_ENTRY_RESTORE, RESTORE_STATS_FIELDS)


def dump_stats_or_none(path: str) -> dict[str, int] | None:
    """The dump statistics, or None when CRIU wrote none or a short file (it ignores write errors of its stats file):
    statistics describe a dump, they never decide a migration's outcome."""
    return _stats_or_none(read_dump_stats, path)


def restore_stats_or_none(path: str) -> dict[str, int] | None:
    return _stats_or_none(read_restore_stats, path)


def _stats_or_none(reader, path: str) -> dict[str, int] | None:
    try:
        return reader(path)
    except (OSError, StatsFormatError):
        return None


def _read_stats(path: str, entry_field: int, names: dict[int, str]) -> dict[str, int]:
    with open(path, "rb") as stats_file:
        data = stats_file.read()
    entry = _stats_entry(data, path)
    for field, value in _fields(entry):
        if field == entry_field:
            return {names[number]: number_value for number, number_value in _fields(value) if number in names}
    raise StatsFormatError(f"{path} holds no {'dump' if entry_field == STATS_ENTRY_DUMP else 'restore'} statistics")


def _stats_entry(data: bytes, path: str) -> bytes:
    if len(data) < HEADER.size:
        raise StatsFormatError(f"{path} is too short for a CRIU stats image ({len(data)} bytes)")
    service_magic, stats_magic, size = HEADER.unpack_from(data)
    if (service_magic, stats_magic) != (IMG_SERVICE_MAGIC, STATS_MAGIC):
        raise StatsFormatError(f"{path} is not a CRIU stats image (magic {service_magic:#x} {stats_magic:#x})")
    entry = data[HEADER.size:HEADER.size + size]
    if len(entry) != size:
        raise StatsFormatError(f"{path} is truncated: its entry needs {size} bytes, {len(entry)} are left")
    return entry


def _fields(message: bytes):
    """Yield (field number, value) for each field of a protobuf message, unknown field numbers included."""
    offset = 0
    while offset < len(message):
        key, offset = _varint(message, offset)
        field, wire_type = key >> 3, key & 7
        if wire_type == WIRE_VARINT:
            value, offset = _varint(message, offset)
        elif wire_type == WIRE_LENGTH_DELIMITED:
            length, offset = _varint(message, offset)
            value, offset = message[offset:offset + length], offset + length
        else:
            raise StatsFormatError(f"protobuf wire type {wire_type} of field {field} is not one stats.proto uses")
        if offset > len(message):
            raise StatsFormatError(f"protobuf field {field} runs past the end of its message")
        yield field, value


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if offset >= len(data):
            raise StatsFormatError("protobuf varint runs past the end of its message")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
