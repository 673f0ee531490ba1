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


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(PSS, RSS) in MiB summed over ``pids``."""
    pss = rss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "Pss":
                pss += int(value.split()[0])
            elif name == "Rss":
                rss += int(value.split()[0])
    return pss / 1024, rss / 1024
