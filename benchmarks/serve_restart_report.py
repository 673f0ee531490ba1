"""The serve-restart report: the figures of a run, its targets, and how it is printed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from benchmarks.serve_restart_start import RANK_USER, Start

RESTART_TARGET_S = 60.0
PSS_TARGET_GB = 2.5


@dataclass(frozen=True)
class Report:
    """The figures of one run; with :meth:`ratios` and :meth:`targets`, the JSON report."""

    posts: int
    users: int
    workers: int
    cores: int
    producer_posts_per_s: float
    replay_only_s: float  # the baseline
    replay_only_posts_per_s: float
    first_start_s: float
    restart_s: float  # spawn -> SERVING, the second start over the same topics
    pss_gb: float  # after the restart serves
    peak_pss_gb: float  # the higher of the two start-ups' peaks
    rank_items: int
    first_start: Start
    restart: Start
    restart_with_version_s: float | None  # with a plan naming a version (--with-version)
    restart_with_version: Start | None
    wall_s: float

    def ratios(self) -> dict[str, float]:
        return {"restart_vs_replay_only": round(self.restart_s / self.replay_only_s, 3)}

    def targets(self) -> dict[str, bool]:
        met = {
            "restart_target_met": self.restart_s <= RESTART_TARGET_S,
            "pss_target_met": self.pss_gb <= PSS_TARGET_GB,
        }
        if self.restart_with_version is not None:
            met["restart_with_version_target_met"] = (
                self.restart_with_version.serving_s <= RESTART_TARGET_S
            )
            met["pss_with_version_target_met"] = self.restart_with_version.pss_gb <= PSS_TARGET_GB
        return met


def print_report(report: Report, as_json: bool) -> None:
    ratios, targets = report.ratios(), report.targets()
    if as_json:
        print(json.dumps({**asdict(report), **ratios, **targets}, indent=2))
        return

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(
        f"{report.posts:,} posts, {report.users:,} users, {report.workers} workers, "
        f"{report.cores} cores; producer {report.producer_posts_per_s:,.0f} posts/s"
    )
    print(
        f"replay only (baseline, in process): {report.replay_only_s:.1f} s "
        f"({report.replay_only_posts_per_s:,.0f} posts/s)"
    )
    print(f"{'seconds':28}{'first start':>12}{'restart':>12}")
    first, restart = report.first_start, report.restart
    rows: list[tuple[str, float | None, float | None]] = [
        ("imports", first.imports_s, restart.imports_s),
        ("replay", first.replay_s, restart.replay_s),
        ("embed + index", first.build_s, restart.build_s),
        ("workers to SERVING", first.workers_s, restart.workers_s),
        ("spawn -> SERVING", first.serving_s, restart.serving_s),
        ("spawn -> every worker up", first.all_workers_s, restart.all_workers_s),
        ("SIGTERM -> exited", first.stop_s, restart.stop_s),
    ]
    for label, one, two in rows:
        print(f"{label:28}{seconds(one):>12}{seconds(two):>12}")
    print(
        f"restart {report.restart_s:.1f} s = {ratios['restart_vs_replay_only']:.2f} x replay only;"
        f" <= {RESTART_TARGET_S:g} s: {verdict(targets['restart_target_met'])}"
    )
    print(
        f"PSS of all serving processes: {report.pss_gb:.2f} GB serving, peak "
        f"{report.peak_pss_gb:.2f} GB during start-up; <= {PSS_TARGET_GB:g} GB: "
        f"{verdict(targets['pss_target_met'])}"
    )
    if (versioned := report.restart_with_version) is not None:
        print(
            f"restart with a plan naming a version: {versioned.serving_s:.1f} s to SERVING "
            f"(replay {seconds(versioned.replay_s)}, load {seconds(versioned.build_s)}); "
            f"PSS {versioned.pss_gb:.2f} GB; <= {RESTART_TARGET_S:g} s: "
            f"{verdict(targets['restart_with_version_target_met'])}"
        )
    print(
        f"Rank for {RANK_USER}: >= {report.rank_items} items "
        f"(first call {restart.first_rank_ms:.0f} ms after the restart)"
    )
