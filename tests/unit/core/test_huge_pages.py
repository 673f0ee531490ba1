"""Huge pages for memory a library allocates itself: finding it, and advising the kernel."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from feedrank.core import huge_pages
from feedrank.core.huge_pages import HUGE_PAGE, added, aligned, anonymous_mappings

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 08:01 1234    /usr/bin/python3.11
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0       [heap]
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
7f0010000000-7f0010400000 r--p 00000000 00:00 0
7f0020000000-7f0020001000 rw-s 00000000 00:05 77      /dev/shm/metrics.db
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0       [stack]
"""


def test_only_writable_anonymous_unnamed_mappings_are_candidates(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    assert anonymous_mappings(maps) == [(0x7F0000000000, 0x7F0010000000)]


def test_a_missing_maps_file_means_no_mappings(tmp_path: Path) -> None:
    assert anonymous_mappings(tmp_path / "absent") == []


def test_added_finds_new_mappings_and_the_grown_part_of_old_ones() -> None:
    before = [(100, 200), (300, 400)]
    after = [(50, 200), (300, 500), (600, 700)]
    assert added(before, after) == [(50, 100), (400, 500), (600, 700)]


def test_added_finds_the_gap_a_merged_mapping_filled() -> None:
    assert added([(0, 10), (20, 30)], [(0, 30)]) == [(10, 20)]
    assert added([(0, 30)], [(0, 30)]) == []


def test_aligned_keeps_whole_huge_pages_of_big_ranges_only() -> None:
    start = 3 * HUGE_PAGE + 4096
    ranges = [(start, start + 10 * HUGE_PAGE), (0, 2 * HUGE_PAGE)]
    assert aligned(ranges, min_bytes=4 * HUGE_PAGE) == [(4 * HUGE_PAGE, 13 * HUGE_PAGE)]


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text.split("[")[1].split("]")[0]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or _thp_mode() == "never",
    reason="the kernel offers no transparent huge pages here",
)
def test_memory_allocated_inside_advised_is_accepted_by_the_kernel() -> None:
    size = 16 * HUGE_PAGE
    before = anonymous_mappings()
    with huge_pages.advised():
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # as malloc's
    grown = aligned(added(before, anonymous_mappings()))
    assert sum(end - start for start, end in grown) >= size - 2 * HUGE_PAGE
    # Advising it again is accepted (idempotent), which is what the kernel said the first time.
    assert huge_pages.advise(grown) == sum(end - start for start, end in grown)
    memory.write(b"\1" * size)  # faults it in: on huge pages where the kernel could
    memory.close()
