"""A registry version over the benchmark's catalogue, served through a plan file.

``serve_restart --with-version`` measures a third start: ``feedrank serve`` with a
serving plan whose stable arm names a published version of every post, as a production
restart has. This module publishes that version the way the learners do
(``publish_version``: the post tower over every live post, the ANN index shipped with
it) and writes the plan.
"""

from __future__ import annotations

from pathlib import Path

from feedrank.catalogue.replay import replay_catalogue
from feedrank.core.clock import SystemClock
from feedrank.core.settings import Settings
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.learners.bootstrap import catalogue_posts, model_configs
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.learners.publishing import publish_version
from feedrank.registry import LocalModelRegistry, TrainingData


def publish_catalogue_version(settings: Settings, registry_dir: Path) -> str:
    """An untrained version (serving cost does not depend on the weights) over every
    post the topics hold; its name."""
    now_ms = SystemClock().now_ms()
    state = replay_catalogue(settings, SystemClock().now_ms).state
    two_tower, ranker = model_configs(settings)
    model = JointModel.new(two_tower, ranker, StepConfig())
    manifest = publish_version(
        LocalModelRegistry(registry_dir),
        model,
        catalogue_posts(state, now_ms),
        None,
        training=TrainingData(source="benchmark", start_ms=now_ms, end_ms=now_ms),
        metrics={},
    )
    return manifest.version


def write_plan(path: Path, version: str) -> None:
    path.write_text(ServingPlan((ArmPlan("stable", version, 1.0),)).to_json())
