"""Decoding of CRIU's stats-dump / stats-restore files (_criu_stats), against files captured on the lab VMs.

The fixtures come from runc 1.1.5 + CRIU 3.17.1 on Debian 12 (kernel 6.1): a pre-dump of the busybox counter
container, then a dump with that pre-dump as parent, then the restore of that dump (tests/unit/fixtures/criu).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._criu_stats import (
    StatsFormatError,
    read_dump_stats,
    read_restore_stats,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "criu"


def test_a_pre_dump_writes_every_dirty_page_and_skips_none():
    assert read_dump_stats(str(FIXTURES / "pre-dump.stats-dump")) == {
        "freezing_time": 52351,
        "frozen_time": 269249,
        "memdump_time": 43119,
        "memwrite_time": 49039,
        "pages_scanned": 1130,
        "pages_skipped_parent": 0,
        "pages_written": 34,
        "irmap_resolve": 0,
        "pages_lazy": 0,
        "page_pipes": 2,
        "page_pipe_bufs": 6,
        "shpages_scanned": 0,
        "shpages_skipped_parent": 0,
        "shpages_written": 0,
    }


def test_a_dump_with_a_parent_skips_the_pages_the_pre_dump_holds():
    assert read_dump_stats(str(FIXTURES / "dump-with-parent.stats-dump")) == {
        "freezing_time": 24383,
        "frozen_time": 2185234,
        "memdump_time": 30435,
        "memwrite_time": 5092,
        "pages_scanned": 1130,
        "pages_skipped_parent": 9,
        "pages_written": 24,
        "irmap_resolve": 0,
        "pages_lazy": 0,
        "page_pipes": 5,
        "page_pipe_bufs": 5,
        "shpages_scanned": 0,
        "shpages_skipped_parent": 0,
        "shpages_written": 0,
    }


def test_a_restore_reports_its_pages_and_times():
    assert read_restore_stats(str(FIXTURES / "restore.stats-restore")) == {
        "pages_compared": 9,
        "pages_skipped_cow": 2,
        "forking_time": 6868,
        "restore_time": 1712579,
        "pages_restored": 31,
    }


def test_dump_statistics_are_not_restore_statistics():
    with pytest.raises(StatsFormatError, match="holds no restore statistics"):
        read_restore_stats(str(FIXTURES / "dump-with-parent.stats-dump"))


def test_a_file_without_the_stats_magics_is_refused(tmp_path: Path):
    image = tmp_path / "inventory.img"
    image.write_bytes((FIXTURES / "dump-with-parent.stats-dump").read_bytes()[4:])
    with pytest.raises(StatsFormatError, match="is not a CRIU stats image"):
        read_dump_stats(str(image))


@pytest.mark.parametrize("size", [0, 11])
def test_a_file_shorter_than_its_header_is_refused(tmp_path: Path, size: int):
    stats = tmp_path / "stats-dump"
    stats.write_bytes((FIXTURES / "dump-with-parent.stats-dump").read_bytes()[:size])
    with pytest.raises(StatsFormatError, match="too short"):
        read_dump_stats(str(stats))


def test_a_truncated_entry_is_refused(tmp_path: Path):
    stats = tmp_path / "stats-dump"
    stats.write_bytes((FIXTURES / "dump-with-parent.stats-dump").read_bytes()[:-1])
    with pytest.raises(StatsFormatError, match="truncated: its entry needs 39 bytes, 38 are left"):
        read_dump_stats(str(stats))


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        # Field 1 (dump, length-delimited) announces 2 bytes, the entry has 1 left.
        ("0a02 08", "protobuf field 1 runs past the end of its message"),
        # Field 1 holds one byte that starts a varint and never ends it.
        ("0a01 80", "protobuf varint runs past the end of its message"),
    ],
)
def test_a_message_cut_short_is_refused(tmp_path: Path, entry: str, error: str):
    stats = tmp_path / "stats-dump"
    stats.write_bytes(bytes.fromhex("40591055 06330957 03000000" + entry))
    with pytest.raises(StatsFormatError, match=error):
        read_dump_stats(str(stats))


def test_a_wire_type_stats_proto_never_uses_is_refused(tmp_path: Path):
    # One entry: field 1 with wire type 5 (fixed32).
    stats = tmp_path / "stats-dump"
    stats.write_bytes(bytes.fromhex("40591055 06330957 05000000 0d01000000"))
    with pytest.raises(StatsFormatError, match="wire type 5 of field 1"):
        read_dump_stats(str(stats))
