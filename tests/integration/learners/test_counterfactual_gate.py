"""Versions judged off-policy before any traffic, end to end on the real topics.

Explore's compact decisions (ε-greedy, with their exploration pools) served by v0001 on
the stable arm are on ``feedrank.decisions``, their labels on ``feedrank.examples``
(engagement follows v0001's own ranking), the catalogue on ``feedrank.posts``:

* ``feedrank evaluate --version V --against v0001`` re-ranks the logged pools with a
  version whose ranking is reversed and finds it worse, its paired interval below zero;
* a learner's judge estimates each new version against v0001 before publishing it, and
  the deploy control plane's default gate reads the estimate: the reversed version is
  refused (aborted at 0% traffic), the same model again passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import replay_catalogue
from feedrank.cli.main import app
from feedrank.core.clock import ManualClock
from feedrank.core.settings import Settings, load_settings, settings_to_environment
from feedrank.deploy.server import build_control
from feedrank.deploy.state import Phase
from feedrank.learners.evaluation.version_judge import CounterfactualJudge
from feedrank.learners.evaluation.version_policy import DecisionSupports, bundle_scorer
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.registry import LocalModelRegistry, ModelBundle, TrainingData, write_bundle
from feedrank.registry.off_policy import PairedEstimate
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.support.catalogue_topics import private_entity_topics, publish_world_to
from tests.support.compact_serving import SERVE_MS, START_MS, RecordingStore, ServedWorld
from tests.support.kafka import TopicFactory
from tests.support.model_versions import all_posts, reversed_ranking, small_bundle, small_world
from tests.unit.learners.evaluation.test_version_policy import EPSILON, labelled

USERS = 150


@dataclass(frozen=True)
class Logged:
    settings: Settings
    catalogue: CatalogueState
    stable: ModelBundle  # v0001, which served every decision


@pytest.fixture(scope="module")
def logged(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    entity = private_entity_topics(kafka.bootstrap, "gate")
    new_topic = TopicFactory(AdminClient({"bootstrap.servers": kafka.bootstrap}), "gate")
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={
            "posts": entity.posts,
            "users": entity.users,
            "graph": entity.graph,
            "decisions": new_topic("decisions"),
            "examples": new_topic("examples"),
        },
        paths={"state_dir": tmp_path_factory.mktemp("gate")},
        explore={"epsilon": EPSILON},
        learner={"ope_window_s": 3600},
        deploy={"gate_min_effective_samples": 50},
    )
    world = small_world(600, USERS, START_MS)
    publish_world_to(kafka.bootstrap, entity, world)
    ranker = replay_catalogue(settings, ManualClock(SERVE_MS).now_ms).state
    served = ServedWorld(world, ranker, CatalogueState(), RecordingStore(ranker))
    payloads = served.serve(USERS, policy="epsilon_greedy", epsilon=EPSILON)  # v0001, stable
    decisions = [events_pb2.Decision.FromString(payload) for payload in payloads]
    stable = small_bundle(all_posts(served.store, SERVE_MS), seed=3)
    supports = DecisionSupports.from_decisions(decisions, PostFeatureRejoin(ranker))
    examples = labelled(decisions, supports, bundle_scorer(stable), np.random.default_rng(7))
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    topics = settings.topics
    for payload, decision in zip(payloads, decisions, strict=True):
        producer.produce(topics.decisions, key=decision.user_id.encode(), value=payload)
    for example in examples:
        value = example.SerializeToString()
        producer.produce(topics.examples, key=example.user_id.encode(), value=value)
    assert producer.flush(30) == 0
    yield Logged(settings, ranker, stable)
    new_topic.delete_all()


def published(registry: LocalModelRegistry, bundle: ModelBundle, metrics: dict[str, float]) -> str:
    def write(directory: Path) -> None:
        write_bundle(directory, bundle)

    training = TrainingData(source="test", examples=1, start_ms=1, end_ms=2)
    return registry.publish(write, training=training, metrics=metrics).version


def test_evaluate_finds_the_reversed_version_worse_than_the_stable_one(
    logged: Logged, tmp_path: Path
) -> None:
    settings = logged.settings.model_copy(
        update={"paths": logged.settings.paths.model_copy(update={"registry_dir": tmp_path})}
    )
    registry = LocalModelRegistry(tmp_path)
    stable = published(registry, logged.stable, {})
    degraded = published(registry, reversed_ranking(logged.stable), {})
    command = ["evaluate", "--version", degraded, "--against", stable, "--since", "1h"]
    result = CliRunner().invoke(
        app, [*command, "--weighting", "item", "--json"], env=settings_to_environment(settings)
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    difference = report["difference"]
    print(f"{degraded} - {stable}: {difference}")
    assert report["candidate"]["logging"]["decisions"] == USERS
    assert difference["ci_high"] < 0, difference


def test_the_gate_refuses_the_reversed_version_before_any_traffic_and_passes_its_twin(
    logged: Logged,
) -> None:
    registry = LocalModelRegistry(logged.settings.paths.registry)
    judge = CounterfactualJudge(logged.settings, registry, PostFeatureRejoin(logged.catalogue))
    assert published(registry, logged.stable, {}) == "v0001"
    degraded = published(
        registry, reversed_ranking(logged.stable), judge(reversed_ranking(logged.stable))
    )
    twin = published(registry, logged.stable, judge(logged.stable))
    estimate = PairedEstimate.from_metrics(registry.manifest(degraded).metrics)
    assert estimate is not None
    assert (estimate.reference, estimate.decisions) == ("v0001", USERS)
    print(f"reversed: {estimate}")

    control = build_control(logged.settings, ManualClock(SERVE_MS), registry=registry)
    assert control.start("v0001").phase is Phase.STABLE
    refused = control.start(degraded)
    assert (refused.phase, refused.canary_weight) == (Phase.ABORTED, 0.0)
    assert "refused before its first step: significantly worse" in refused.message
    started = control.start(twin)
    assert started.phase is Phase.PROGRESSING, started.message
    assert "not significantly worse" in control.last_analysis
