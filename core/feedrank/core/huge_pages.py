"""Transparent huge pages for big, randomly read memory that a library allocates itself.

An HNSW search visits a few thousand nodes scattered over the whole graph (about 460 MB
at 1M posts): with 4 KiB pages nearly every visit misses the TLB, and in a virtual
machine each miss walks two sets of page tables. On 2 MiB pages the graph needs a few
hundred TLB entries instead of 100,000. numpy already asks for huge pages for its big
arrays; hnswlib allocates its graph itself, so :func:`advised` finds the memory that an
allocation added (the process's anonymous mappings before and after it) and advises the
kernel: ``MADV_HUGEPAGE`` (later faults there get huge pages), then ``MADV_COLLAPSE``
(what is already filled moves onto huge pages now; Linux 6.1 and later).

It is advice only. Where the kernel's THP setting is ``never``, on an older kernel or on
another OS, nothing changes and nothing fails. Measured on this project's box, a KVM
guest: one 1M x 64 graph answered k=1000 queries at 491-624 /s against 411-458, the
largest graph of a 1M-post world spread over languages 5-15 % faster, and collapsing
524 MiB took 1 s (docs/benchmarks.md, "Session 25").
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HUGE_PAGE = 2 << 20  # x86-64 and arm64 (4 KiB base pages): a PMD maps 2 MiB
MIN_ADVISED = 4 * HUGE_PAGE  # smaller allocations gain little and may round up to 2 MiB
MADV_HUGEPAGE = 14  # <asm-generic/mman-common.h>
MADV_COLLAPSE = 25

Ranges = list[tuple[int, int]]  # [start, end) byte addresses, sorted


def anonymous_mappings(maps: Path = Path("/proc/self/maps")) -> Ranges:
    """This process's writable anonymous mappings (no file, no [heap] or [stack] name)."""
    ranges: Ranges = []
    try:
        lines = maps.read_text().splitlines()
    except OSError:  # not Linux
        return ranges
    for line in lines:
        fields = line.split()
        if len(fields) != 5 or not fields[1].startswith("rw"):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        ranges.append((start, end))
    return sorted(ranges)


def added(before: Ranges, after: Ranges) -> Ranges:
    """The parts of ``after`` that ``before`` did not cover (a grown mapping's new part)."""
    new: Ranges = []
    for start, end in after:
        cursor = start
        for old_start, old_end in before:
            if old_end <= cursor or old_start >= end:
                continue
            if old_start > cursor:
                new.append((cursor, old_start))
            cursor = max(cursor, old_end)
        if cursor < end:
            new.append((cursor, end))
    return new


def aligned(ranges: Ranges, min_bytes: int = MIN_ADVISED) -> Ranges:
    """Each range shrunk to whole huge pages, kept if at least ``min_bytes`` remain."""
    kept: Ranges = []
    for start, end in ranges:
        first = -(-start // HUGE_PAGE) * HUGE_PAGE
        last = end // HUGE_PAGE * HUGE_PAGE
        if last - first >= min_bytes:
            kept.append((first, last))
    return kept


def advise(ranges: Ranges) -> int:
    """Ask for huge pages over ``ranges`` (aligned); returns the bytes the kernel accepted."""
    madvise = _madvise()
    if madvise is None:
        return 0
    accepted = 0
    for start, end in ranges:
        if madvise(start, end - start, MADV_HUGEPAGE) == 0:
            accepted += end - start
            madvise(start, end - start, MADV_COLLAPSE)  # may refuse (busy, too sparse): fine
    return accepted


@contextmanager
def advised() -> Iterator[None]:
    """Ask for huge pages over the big anonymous memory the body allocates. A range that
    another thread maps meanwhile is advised too: it is advice, and only for 8 MiB and
    more."""
    before = anonymous_mappings()
    yield
    advise(aligned(added(before, anonymous_mappings())))


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    function = ctypes.CDLL(None, use_errno=True).madvise
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function
