"""Engagement per arm over simulated time: a table, a CSV and a plot."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from rich.table import Table

from feedrank.simulate.engagement import EngagementLedger, Tally


def totals_table(totals: dict[str, Tally], title: str, versus_oracle: dict[str, float]) -> Table:
    """Per arm: impressions, engagement rate, ``versus_oracle`` (its engagement over the
    oracle's at the same times, see ``EngagementLedger.versus_oracle``) and safeguards."""
    table = Table(title=title)
    columns = ("arm / model", "impressions", "engagement rate", "vs oracle, same times")
    for column in (*columns, "safeguards"):
        table.add_column(column, justify="left" if column == "arm / model" else "right")
    for arm in sorted(totals):
        tally = totals[arm]
        ratio = versus_oracle.get(arm)
        versus = f"{ratio:.2f}x" if ratio is not None else "-"
        table.add_row(
            arm,
            f"{tally.impressions:,.0f}",
            f"{tally.rate:.4f}",
            versus,
            f"{tally.safeguards:,.0f}",
        )
    return table


def write_csv(ledger: EngagementLedger, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["bucket_start_ms", "arm", "impressions", "engagements", "rate"])
        for arm, points in ledger.series().items():
            for start_ms, tally in points:
                writer.writerow(
                    [
                        start_ms,
                        arm,
                        f"{tally.impressions:.0f}",
                        f"{tally.engagements:.2f}",
                        f"{tally.rate:.5f}",
                    ]
                )


def write_plot(ledger: EngagementLedger, path: Path, title: str) -> None:
    """Engagement rate per arm per time bucket (simulated time on the x axis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(10, 5))
    for arm, points in sorted(ledger.series().items()):
        times = np.array([start_ms for start_ms, _ in points], dtype="datetime64[ms]")
        style = "--" if "baseline" in arm else "-"
        axes.plot(times, [tally.rate for _, tally in points], style, marker=".", label=arm)
    axes.set_title(title)
    axes.set_xlabel("simulated time (UTC)")
    axes.set_ylabel("engaged impressions / impressions")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
