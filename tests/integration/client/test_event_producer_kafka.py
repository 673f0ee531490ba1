"""EventProducer against the real broker: each event on its topic, keyed by its id."""

from __future__ import annotations

from feedrank.client import EventProducer, TopicNames
from feedrank.core import codecs, entity_codecs
from feedrank.core.feature_schema import CONTENT_DIM
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import catalogue_pb2, events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000


def test_catalogue_events_and_rewards_arrive_keyed_and_decodable(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader
) -> None:
    topics = TopicNames(
        posts=new_topic("posts"),
        users=new_topic("users"),
        graph=new_topic("graph"),
        rewards=new_topic("rewards"),
    )
    with EventProducer(kafka.bootstrap, topics=topics, clock=lambda: TS + 1) as producer:
        producer.upsert_post(
            "p1",
            creator_id="c1",
            created_ms=TS,
            language="en",
            country="us",
            topics=["cats", "dogs"],
            topic_weights=[2.0, 1.0],
            embedding=[0.5] * CONTENT_DIM,
            features={"quality": 0.9, "format": "video"},
            ts_ms=TS,
        )
        producer.delete_post("p2")
        producer.upsert_user("u1", language="en", country="US", age_bucket="25-34")
        producer.delete_user("u2", ts_ms=TS)
        producer.follow("u1", "c1")
        producer.block("u1", "c2")
        producer.hide_creator("u3", "c1")
        producer.send_reward(decision_id="d1", post_id="p1", user_id="u1", type="dwell", value=4)
        producer.flush()
        assert producer.delivered == 8
        assert producer.pending == 0

    posts = consume(topics.posts, 2)
    assert [record.key() for record in posts] == [b"p1", b"p2"]
    assert all(
        codecs.header_value(record.headers(), codecs.CONTENT_TYPE_HEADER)
        == codecs.PROTOBUF_CONTENT_TYPE
        for record in posts
    )
    post = entity_codecs.decode_post_event(posts[0].value(), posts[0].headers())
    assert (post.post_id, post.country, list(post.topics)) == ("p1", "US", ["cats", "dogs"])
    assert post.features["format"].text == "video"
    assert post.ts_ms == TS
    deleted = entity_codecs.decode_post_event(posts[1].value(), posts[1].headers())
    assert (deleted.op, deleted.ts_ms) == (catalogue_pb2.ENTITY_OP_DELETE, TS + 1)

    users = consume(topics.users, 2)
    assert [record.key() for record in users] == [b"u1", b"u2"]
    user = entity_codecs.decode_user_event(users[0].value(), users[0].headers())
    assert user.age_bucket == "25-34"

    edges = consume(topics.graph, 3)
    decoded = [entity_codecs.decode_graph_event(r.value(), r.headers()) for r in edges]
    assert sorted((edge.user_id, edge.op, edge.target_id) for edge in decoded) == [
        ("u1", catalogue_pb2.GRAPH_OP_FOLLOW, "c1"),
        ("u1", catalogue_pb2.GRAPH_OP_BLOCK, "c2"),
        ("u3", catalogue_pb2.GRAPH_OP_HIDE_CREATOR, "c1"),
    ]
    assert {record.key() for record in edges} == {b"u1", b"u3"}

    [record] = consume(topics.rewards, 1)
    assert record.key() == b"u1"
    reward = codecs.decode_reward(record.value(), record.headers())
    assert (reward.type, reward.value, reward.decision_id) == (
        events_pb2.REWARD_TYPE_DWELL,
        4,
        "d1",
    )
