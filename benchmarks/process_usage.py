"""What benchmarked processes spend, from ``/proc``: CPU time and memory."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def stat_fields(stat: str) -> list[str]:
    """``/proc/<pid>/stat``'s fields after the command: state, ppid, pgrp (2), …,
    utime (11), stime (12)."""
    return stat.rsplit(")", 1)[1].split()


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(Path(f"/proc/{pid}/stat").read_text())
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS_PER_S


def smaps_rollup_kib(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup``'s sizes in KiB by name (``Pss``, ``Rss``, ...);
    OSError when the process is gone."""
    sizes = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        fields = value.split()
        if len(fields) == 2 and fields[1] == "kB":
            sizes[name] = int(fields[0])
    return sizes


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(PSS, RSS) in MiB summed over ``pids``."""
    rollups = [smaps_rollup_kib(pid) for pid in pids]
    pss = sum(rollup["Pss"] for rollup in rollups)
    rss = sum(rollup["Rss"] for rollup in rollups)
    return pss / 1024, rss / 1024
