"""A version is published with its judge's off-policy estimate in its metrics; a judge
that fails is logged and the version published without them (an estimate is advice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.learners.joint import JointModel
from feedrank.learners.publishing import publish_version
from feedrank.registry import LocalModelRegistry, ModelBundle, TrainingData
from feedrank.simulate.world_views import world_catalogue
from tests.unit.learners.factories import small_ranker, small_two_tower, tiny_world


def publish(registry: LocalModelRegistry, judge: object) -> dict[str, float]:
    world = tiny_world()
    version = publish_version(
        registry,
        JointModel.new(small_two_tower(), small_ranker()),
        world_catalogue(world, world.config.start_ms),
        None,
        training=TrainingData(source="test", examples=0, start_ms=0, end_ms=1),
        metrics={"auc": 0.7},
        judge=judge,  # type: ignore[arg-type]
    )
    return version.metrics


def test_the_judge_s_metrics_travel_with_the_version(tmp_path: Path) -> None:
    seen: list[ModelBundle] = []

    def judge(bundle: ModelBundle) -> dict[str, float]:
        seen.append(bundle)
        return {"ope_difference": -0.01, "ope_difference_std_error": 0.002}

    metrics = publish(LocalModelRegistry(tmp_path), judge)
    assert metrics == {"auc": 0.7, "ope_difference": -0.01, "ope_difference_std_error": 0.002}
    assert len(seen) == 1
    assert len(seen[0].post_index)  # the bundle as published: towers, ranker, embeddings


def test_a_failing_judge_never_blocks_a_publish(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def judge(bundle: ModelBundle) -> dict[str, float]:
        raise RuntimeError("the broker went away")

    assert publish(LocalModelRegistry(tmp_path), judge) == {"auc": 0.7}
    assert "off-policy estimate of the new version failed" in caplog.text
