"""No leakage through the real topics: explore serves from a catalogue replayed from
``feedrank.posts`` and logs compact decisions; the posts are then updated on the topic;
a learner replaying (and following) the topic re-joins exactly the post features the
ranker used (and reads back the typed user it used), and ``feedrank learn`` learns every
shown item of the decisions."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import replay_catalogue
from feedrank.core.clock import ManualClock
from feedrank.core.compact_features import full_user_features
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import HOUR_MS
from feedrank.learners.catalogue_replay import follow_catalogue
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.learners.online.checkpoint import CheckpointStore
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import catalogue_pb2, events_pb2
from tests.integration.learners.test_online_learner_kafka import learner_process
from tests.support.catalogue_topics import private_entity_topics, publish_world_to, topic_env
from tests.support.compact_serving import (
    SERVE_MS,
    START_MS,
    RecordingStore,
    ServedWorld,
    restyled,
)
from tests.support.kafka import TopicFactory
from tests.support.model_versions import small_world

USERS = 10


def produce(bootstrap: str, topic: str, events: list[catalogue_pb2.PostEvent]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for event in events:
        producer.produce(topic, key=event.post_id.encode(), value=event.SerializeToString())
    assert producer.flush(30) == 0


def test_a_learner_following_the_posts_topic_rejoins_what_the_ranker_used(
    kafka: KafkaBroker, settings_for_kafka: Settings, new_topic: TopicFactory, tmp_path: Path
) -> None:
    entity = private_entity_topics(kafka.bootstrap, "rejoin")
    decisions_topic = new_topic("decisions", partitions=2)
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={"posts": entity.posts, "users": entity.users, "graph": entity.graph},
    )
    world = small_world(600, 60, START_MS)
    publish_world_to(kafka.bootstrap, entity, world)
    produce(  # a third of the posts upserted again before serving
        kafka.bootstrap,
        entity.posts,
        [restyled(world, row, START_MS + HOUR_MS, seed=row) for row in range(0, 600, 3)],
    )
    ranker = replay_catalogue(settings, ManualClock(SERVE_MS).now_ms).state  # as explore does
    served = ServedWorld(world, ranker, CatalogueState(), RecordingStore(ranker))
    payloads = served.serve(USERS)
    decisions = [events_pb2.Decision.FromString(payload) for payload in payloads]
    shown = sorted({item.post_id for decision in decisions for item in decision.items})
    produce(  # then every shown post changes, one is taken down
        kafka.bootstrap,
        entity.posts,
        [
            catalogue_pb2.PostEvent(
                op=catalogue_pb2.ENTITY_OP_DELETE, post_id=shown[0], ts_ms=START_MS + 4 * HOUR_MS
            ),
            *(
                served.restyled(int(post[1:]), START_MS + 4 * HOUR_MS, seed=1, language="ja")
                for post in shown[1:]
            ),
        ],
    )

    followed = follow_catalogue(settings, without="-", reporter=Reporter())
    followed.stop()
    learner = followed.state
    assert learner.superseded is not None
    assert len(learner.superseded) == 200 + len(shown)
    rejoin = PostFeatureRejoin(learner)
    items = 0
    for decision in decisions:
        user = served.store.users[(decision.user_id, SERVE_MS)]  # logged typed, read whole
        logged_user = full_user_features(decision.user_features, decision.event_time_ms)
        assert dict(logged_user.numeric) == dict(user.to_proto().numeric)
        assert dict(logged_user.categorical) == dict(user.to_proto().categorical)
        for item, features in rejoin.shown_items(decision):
            used, version = served.store.used(item.post_id, SERVE_MS)
            assert item.catalogue_version == version
            want = used.to_protos()[0]
            # creator_index is a process-local row (interned in arrival order, which
            # differs between two replays of a partitioned topic): the same creator.
            rows = (features.numeric.pop("creator_index"), want.numeric.pop("creator_index"))
            assert learner.creator_id(int(rows[0])) == ranker.creator_id(int(rows[1]))
            assert dict(features.numeric) == dict(want.numeric)
            assert dict(features.categorical) == dict(want.categorical)
            assert list(features.embedding) == list(want.embedding)
            items += 1
    assert items == sum(len(decision.items) for decision in decisions)
    assert not rejoin.skipped

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for payload, decision in zip(payloads, decisions, strict=True):
        producer.produce(decisions_topic, key=decision.user_id.encode(), value=payload)
    assert producer.flush(30) == 0
    state = tmp_path / "learner"
    process = learner_process(
        settings_for_kafka,
        new_topic("examples", partitions=1),
        state,
        "--until-idle",
        "3",
        environment_overrides={
            **topic_env(entity),
            "FEEDRANK_LEARNER__FEEDBACK": "fake_negatives",
            "FEEDRANK_TOPICS__DECISIONS": decisions_topic,
        },
    )
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output.decode()[-3000:]
    assert "not learned" not in output.decode()
    progress = CheckpointStore(state / "checkpoints").progress()
    assert progress is not None
    assert progress.examples_applied == items  # every shown item, its features re-joined
