"""Engagement per arm over simulated time: a table, a CSV and a plot."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from rich.table import Table

from feedrank.simulate.engagement import EngagementLedger


def totals_table(ledger: EngagementLedger, title: str) -> Table:
    """Per arm: impressions, drawn engagement rate, its ratio to the oracle's drawn rate at
    the same times, its expected engagement over the oracle's for the same users and
    times (``Tally.paired_ratio``, the low-noise one) and safeguards."""
    totals = ledger.totals()
    versus_oracle = ledger.versus_oracle()
    table = Table(title=title)
    table.add_column("arm / model", min_width=14, max_width=26)
    for column in ("impressions", "engaged", "x oracle\ndrawn", "x oracle\npaired", "safeguards"):
        table.add_column(column, justify="right", no_wrap=True)
    table.caption = (
        "engaged: share of impressions engaged inside the reward window; x oracle, drawn: "
        "over the oracle's drawn rate at the same times; x oracle, paired: expected "
        "engagement over the oracle's for the same users at the same times"
    )
    for arm in sorted(totals):
        tally = totals[arm]
        table.add_row(
            arm,
            f"{tally.impressions:,.0f}",
            f"{tally.rate:.4f}" if tally.impressions else "-",  # a paired-only baseline
            _ratio(versus_oracle.get(arm)),
            _ratio(tally.paired_ratio),
            f"{tally.safeguards:,.0f}",
        )
    return table


def holdout_summary(ledger: EngagementLedger) -> str | None:
    """One line: the served arms over the static holdout, on the same days, over the
    whole run and over its second half; None without a holdout arm."""
    whole = ledger.versus_holdout()
    series = ledger.series()
    if whole is None or not series:
        return None
    times = [start_ms for points in series.values() for start_ms, _ in points]
    middle = min(times) + (max(times) - min(times)) // 2
    later = ledger.versus_holdout(since_ms=middle)
    line = (
        f"closed loop over the static holdout (same days, each over the oracle for the "
        f"same users): {whole.ratio:.3f}x over the run ({whole.served_versus_oracle:.3f}x "
        f"vs {whole.holdout_versus_oracle:.3f}x the oracle; "
        f"{whole.holdout.impressions:,.0f} holdout impressions)"
    )
    if later is not None:
        line += f", {later.ratio:.3f}x over its second half"
    return line


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


CSV_COLUMNS = (
    "bucket_start_ms",
    "arm",
    "impressions",
    "engagements",
    "rate",
    "expected_engagements",
    "paired_expected",
    "paired_oracle_expected",
    "paired_ratio",
)


def write_csv(ledger: EngagementLedger, path: Path) -> None:
    """Per arm and bucket: drawn and expected engagement, and the paired sums."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for arm, points in ledger.series().items():
            for start_ms, tally in points:
                ratio = tally.paired_ratio
                writer.writerow(
                    [
                        start_ms,
                        arm,
                        f"{tally.impressions:.0f}",
                        f"{tally.engagements:.2f}",
                        f"{tally.rate:.5f}",
                        f"{tally.expected:.3f}",
                        f"{tally.paired:.3f}",
                        f"{tally.paired_oracle:.3f}",
                        "" if ratio is None else f"{ratio:.4f}",
                    ]
                )


_PALETTE = matplotlib.colormaps["tab20"]


def pooled_paired_ratios(
    ledger: EngagementLedger, holdout: bool, window: int
) -> list[tuple[int, float]]:
    """Per bucket, the paired ratio of the served arms together (``holdout`` False) or of
    the holdout arm, summed over the last ``window`` buckets (a rolling day at four
    6-hour buckets): the arms' own lines are too noisy to compare by eye."""
    by_bucket = ledger.pooled(holdout)
    starts = sorted(by_bucket)
    pooled = []
    for index, start_ms in enumerate(starts):
        recent = [by_bucket[start] for start in starts[max(0, index - window + 1) : index + 1]]
        oracle = sum(tally.paired_oracle for tally in recent)
        if oracle > 0:
            pooled.append((start_ms, sum(tally.paired for tally in recent) / oracle))
    return pooled


def write_plot(ledger: EngagementLedger, path: Path, title: str, rolling: int = 4) -> None:
    """Two panels over simulated time: the drawn engagement rate per arm, and each served
    arm's expected engagement over the oracle's for the same users and times, with the
    served arms together and the holdout as rolling sums over ``rolling`` buckets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (rates, ratios) = plt.subplots(2, 1, figsize=(12, 8), sharex=True, layout="constrained")
    for number, (arm, points) in enumerate(sorted(ledger.series().items())):
        times = np.array([start_ms for start_ms, _ in points], dtype="datetime64[ms]")
        baseline = "baseline" in arm
        style = {"linestyle": "--" if baseline else "-", "color": _PALETTE(number % _PALETTE.N)}
        if any(tally.impressions for _, tally in points):  # not a paired-only baseline
            rates.plot(times, [tally.rate for _, tally in points], marker=".", label=arm, **style)
        paired = [(t, tally.paired_ratio) for t, (_, tally) in zip(times, points, strict=True)]
        shown = [(t, ratio) for t, ratio in paired if ratio is not None]
        if shown and not baseline:  # the table has random's; the plot zooms on the served
            ratios.plot(*zip(*shown, strict=True), marker=".", alpha=0.45, linewidth=1, **style)
    pooled_lines = (
        (False, "closed loop (its arms together)", "black"),
        (True, "holdout (the static first version)", "tab:red"),
    )
    for holdout, label, color in pooled_lines:
        pooled = pooled_paired_ratios(ledger, holdout, rolling)
        if pooled and (holdout or ledger.versus_holdout() is not None):
            times = np.array([start_ms for start_ms, _ in pooled], dtype="datetime64[ms]")
            ratios.plot(
                times,
                [ratio for _, ratio in pooled],
                color=color,
                linewidth=2.5,
                label=f"{label}, rolling {rolling} buckets",
            )
    ratios.axhline(0.8, color="grey", linewidth=0.8, linestyle=":")
    rates.set_title(title)
    rates.set_ylabel("engaged impressions / impressions")
    ratios.set_ylabel("expected engagement / oracle's\n(same users, same times; dotted: 0.8)")
    ratios.set_xlabel("simulated time (UTC)")
    for axes in (rates, ratios):
        axes.grid(alpha=0.3)
    ratios.tick_params(axis="x", labelrotation=30)
    figure.legend(loc="outside right center", fontsize="small")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
