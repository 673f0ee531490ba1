"""The freshness report: the sampled likes summarised, baselines, settings, the text table."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict
from typing import Any

import numpy as np

from benchmarks.freshness_profile import Profile
from benchmarks.freshness_watchers import SeenExample, SeenVersion, first_covering
from feedrank.core.settings import Settings

TARGET_P50_S = 30.0


def percentiles(values: list[float], prefix: str) -> dict[str, float]:
    """p50, p95, min and max of ``values`` (NaN when there are none)."""
    array = np.asarray(values, dtype=np.float64)
    figures = {"p50": 50.0, "p95": 95.0, "min": 0.0, "max": 100.0}
    return {
        f"{prefix}_{name}_s": round(float(np.percentile(array, q)), 3) if len(array) else math.nan
        for name, q in figures.items()
    }


def summarise(
    sampled: dict[tuple[str, str], float],
    positives: dict[tuple[str, str], SeenExample],
    versions: list[SeenVersion],
    versions_before: int,
    live_s: float,
    examples_live: int,
) -> dict[str, Any]:
    join: list[float] = []
    learner: list[float] = []
    fresh: list[float] = []
    no_example = unreached = 0
    used: set[str] = set()
    for key, t0 in sampled.items():
        example = positives.get(key)
        if example is None:
            no_example += 1
            continue
        version = first_covering(versions, example)
        if version is None:
            unreached += 1
            continue
        used.add(version.version)
        join.append(example.seen_s - t0)
        learner.append(version.seen_s - example.seen_s)
        fresh.append(version.seen_s - t0)
    # The cadence the learner kept: intervals between the versions published from the
    # start of the measurement to the last one an engagement needed.
    last = max((i for i, v in enumerate(versions) if v.version in used), default=-1)
    window = versions[max(0, versions_before - 1) : last + 1]
    gaps = [later.seen_s - earlier.seen_s for earlier, later in itertools.pairwise(window)]
    report: dict[str, Any] = {
        "engagements": len(sampled),
        "reached_version": len(fresh),
        "no_example": no_example,
        "unreached": unreached,
        "examples_per_s": round(examples_live / live_s, 1),
        "versions_used": len(used),
        "version_interval_mean_s": round(float(np.mean(gaps)), 3) if gaps else float("nan"),
    }
    report |= percentiles(fresh, "freshness")
    report |= percentiles(join, "join")
    report |= percentiles(learner, "learner")
    return report


def add_baselines(report: dict[str, Any], profile: Profile) -> None:
    p50 = report["freshness_p50_s"]
    ideal = profile.checkpoint_interval_s + profile.publish_every_s
    cadence = report["join_p50_s"] + report["version_interval_mean_s"] / 2
    report |= {
        "ideal_pipeline_s": ideal,
        "ratio_p50_vs_join_p50": round(p50 / report["join_p50_s"], 2),
        "ratio_p50_vs_ideal": round(p50 / ideal, 3),
        "ratio_max_vs_ideal": round(report["freshness_max_s"] / ideal, 3),
        "cadence_expected_s": round(cadence, 3),
        "ratio_p50_vs_cadence_expected": round(p50 / cadence, 3),
        "target_p50_s": TARGET_P50_S,
        "target_met": bool(p50 <= TARGET_P50_S),
    }


def settings_report(profile: Profile, settings: Settings) -> dict[str, Any]:
    used = asdict(profile)
    used["user_id_buckets"] = settings.learner.user_id_buckets
    used["post_id_buckets"] = settings.learner.post_id_buckets
    used["partitions"] = settings.topics.partitions
    used["parallelism"] = settings.flink.parallelism
    used["checkpoint_every_s"] = settings.learner.checkpoint_every_s
    used["publish_every_examples"] = settings.learner.publish_every_examples
    return used


def describe_settings(settings: Settings, profile: Profile) -> str:
    learner = settings.learner
    return (
        f"settings: join checkpoint every {settings.flink.checkpoint_interval_s}s, parallelism "
        f"{settings.flink.parallelism}, {settings.topics.partitions} partitions, reward window "
        f"{profile.reward_window_s}s; learner micro-batch {learner.micro_batch_size}, publish "
        f"every {learner.publish_every_s}s (or {learner.publish_every_examples:,} examples), "
        f"checkpoint every {learner.checkpoint_every_s}s; world {profile.posts:,} posts, "
        f"{profile.users:,} users; traffic {profile.rate}/s x {profile.items} items, likes on "
        f"{profile.like_share:.0%} of decisions {profile.like_delay_s}s later"
    )


def print_text(report: dict[str, Any]) -> None:
    rows = [
        ("reward -> version (freshness)", "freshness"),
        ("reward -> example (join)", "join"),
        ("example -> version (learner)", "learner"),
    ]
    print(f"{'':32}{'p50 s':>10}{'p95 s':>10}{'min s':>10}{'max s':>10}")
    for label, prefix in rows:
        values = (report[f"{prefix}_{q}_s"] for q in ("p50", "p95", "min", "max"))
        print(f"{label:32}" + "".join(f"{value:>10.2f}" for value in values))
    print()
    for name, value in report.items():
        print(f"{name:>32}: {value}")
