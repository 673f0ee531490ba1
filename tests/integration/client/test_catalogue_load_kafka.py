"""`feedrank catalogue load` into the real broker: good rows loaded, the bad one reported."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core import entity_codecs
from feedrank.stack.kafka_broker import KafkaBroker
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000


def test_load_csv_produces_the_good_rows_and_reports_the_bad_line(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader, tmp_path: Path
) -> None:
    posts = new_topic("posts")
    # users and graph do not exist yet: the command creates them (and the test deletes them).
    users, graph = (f"test.catalogue_load.{name}.{uuid.uuid4().hex[:8]}" for name in "ug")
    new_topic.created += [users, graph]
    path = tmp_path / "posts.csv"
    path.write_text(
        "post_id,creator_id,created_ms,language,topics,ts_ms,quality\n"
        f"p1,c1,{TS},en,cats|dogs,{TS},0.5\n"
        f"p2,c1,{TS},en,,{TS},\n"
        f"p3,c2,{TS},not a language,cats,{TS},1\n"
        f"p4,c2,{TS},fr,chats,{TS},2\n"
    )
    env = {
        "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "FEEDRANK_TOPICS__POSTS": posts,
        "FEEDRANK_TOPICS__USERS": users,
        "FEEDRANK_TOPICS__GRAPH": graph,
    }
    result = CliRunner().invoke(app, ["catalogue", "load", str(path)], env=env)

    assert result.exit_code == 1, result.output
    assert "line 4: language:" in result.output
    assert "loaded 3 posts, skipped 1 bad rows" in result.output
    records = consume(posts, 3)
    assert [record.key() for record in records] == [b"p1", b"p2", b"p4"]
    first = entity_codecs.decode_post_event(records[0].value(), records[0].headers())
    assert list(first.topics) == ["cats", "dogs"]
    assert first.features["quality"].number == 0.5
    assert set(kafka_topics(kafka)) >= {users, graph}


def kafka_topics(kafka: KafkaBroker) -> list[str]:
    return list(AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics)
