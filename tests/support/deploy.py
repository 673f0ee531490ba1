"""Helpers for deploy tests: small registry versions and 5-minute aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from feedrank.registry import LocalModelRegistry, TrainingData
from feedrank.v1 import events_pb2

WINDOW_MS = 5 * 60 * 1000


def publish_versions(
    registry: LocalModelRegistry, count: int, metrics: Mapping[str, float] | None = None
) -> list[str]:
    """``count`` versions of placeholder files (the deploy service never unpacks them)."""
    versions: list[str] = []
    for index in range(count):

        def write(directory: Path, index: int = index) -> None:
            (directory / "weights.bin").write_bytes(bytes([index]) * 64)

        manifest = registry.publish(
            write,
            parent=versions[-1] if versions else "",
            training=TrainingData(source="test", examples=10, start_ms=1, end_ms=2),
            metrics={"auc": 0.8 + index / 100, **(metrics or {})},
        )
        versions.append(manifest.version)
    return versions


def window_aggregate(
    rng: np.random.Generator,
    *,
    version: str,
    arm: str,
    window_start_ms: int,
    impressions: int,
    rates: tuple[float, float, float, float],
) -> events_pb2.EngagementAggregate:
    """One 5-minute aggregate with binomial engagements, reports, blocks and hides, all
    prompt."""
    engagements, reports, blocks, hides = (int(rng.binomial(impressions, p)) for p in rates)
    return prompt_aggregate(
        version=version,
        arm=arm,
        window_start_ms=window_start_ms,
        impressions=impressions,
        counts=(engagements, reports, blocks, hides),
    )


def prompt_aggregate(
    *,
    version: str,
    arm: str,
    window_start_ms: int,
    impressions: int,
    counts: tuple[int, int, int, int],
) -> events_pb2.EngagementAggregate:
    """One 5-minute aggregate of these engagements, reports, blocks and hides, all prompt."""
    engagements, reports, blocks, hides = counts
    return events_pb2.EngagementAggregate(
        window_start_ms=window_start_ms,
        window_end_ms=window_start_ms + WINDOW_MS,
        model_version=version,
        arm=arm,
        impressions=impressions,
        engagements=engagements,
        engagement_rate=engagements / impressions if impressions else 0.0,
        reports=reports,
        blocks=blocks,
        hides=hides,
        prompt_engagements=engagements,
        prompt_reports=reports,
        prompt_blocks=blocks,
        prompt_hides=hides,
    )


def registry_at(root: Path) -> LocalModelRegistry:
    return LocalModelRegistry(root / "registry")
