"""`feedrank evaluate --version V --against S` on the real topics: explore's compact
decisions (with their exploration pools) on ``feedrank.decisions``, their labels on
``feedrank.examples``, the catalogue replayed from ``feedrank.posts`` to re-join them,
and two registry versions: the model engagement follows comes out ahead of the logging
model, with a paired interval above zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from typer.testing import CliRunner

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import replay_catalogue
from feedrank.cli.main import app
from feedrank.core.clock import ManualClock
from feedrank.core.settings import load_settings
from feedrank.learners.evaluation.version_policy import DecisionSupports, bundle_scorer
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.registry import LocalModelRegistry
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.support.catalogue_topics import private_entity_topics, publish_world_to, topic_env
from tests.support.compact_serving import SERVE_MS, START_MS, RecordingStore, ServedWorld
from tests.support.kafka import TopicFactory
from tests.support.model_versions import all_posts, publish, small_bundle, small_world
from tests.unit.learners.evaluation.test_version_policy import EPSILON, labelled

USERS = 150


def test_a_version_is_judged_against_another_on_the_logged_decisions(
    kafka: KafkaBroker, new_topic: TopicFactory, tmp_path: Path
) -> None:
    entity = private_entity_topics(kafka.bootstrap, "evaluate")
    decisions_topic, examples_topic = new_topic("decisions"), new_topic("examples")
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={"posts": entity.posts, "users": entity.users, "graph": entity.graph},
    )
    world = small_world(600, USERS, START_MS)
    publish_world_to(kafka.bootstrap, entity, world)
    ranker = replay_catalogue(settings, ManualClock(SERVE_MS).now_ms).state  # as explore does
    served = ServedWorld(world, ranker, CatalogueState(), RecordingStore(ranker))
    payloads = served.serve(USERS, policy="epsilon_greedy", epsilon=EPSILON)
    decisions = [events_pb2.Decision.FromString(payload) for payload in payloads]

    posts = all_posts(served.store, SERVE_MS)
    engaging, logging_model = small_bundle(posts, seed=11), small_bundle(posts, seed=3)
    supports = DecisionSupports.from_decisions(decisions, PostFeatureRejoin(ranker))
    examples = labelled(decisions, supports, bundle_scorer(engaging), np.random.default_rng(5))
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for payload, decision in zip(payloads, decisions, strict=True):
        producer.produce(decisions_topic, key=decision.user_id.encode(), value=payload)
    for example in examples:
        producer.produce(
            examples_topic, key=example.user_id.encode(), value=example.SerializeToString()
        )
    assert producer.flush(30) == 0

    registry = LocalModelRegistry(tmp_path / "registry")
    good, logging_version = publish(registry, engaging), publish(registry, logging_model)
    command = ["evaluate", "--version", good, "--against", logging_version, "--since", "1h"]
    result = CliRunner().invoke(
        app,
        [*command, "--weighting", "item", "--json"],
        env={
            **topic_env(entity),
            "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "FEEDRANK_TOPICS__DECISIONS": decisions_topic,
            "FEEDRANK_TOPICS__EXAMPLES": examples_topic,
            "FEEDRANK_PATHS__REGISTRY_DIR": str(tmp_path / "registry"),
            "FEEDRANK_EXPLORE__EPSILON": str(EPSILON),
        },
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    difference = report["difference"]
    print(f"{good} - {logging_version}: {difference}")
    assert report["candidate"]["logging"]["decisions"] == USERS
    assert difference["value"] > 0
    assert difference["ci_low"] > 0, difference
