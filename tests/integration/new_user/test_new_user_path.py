"""The README's new-user path, at a small size, on data that is not the simulator's.

A two-language newsroom (``tests/fixtures/newsroom``: Brazilian Portuguese and Swahili
articles with string ids, readers, follows and a hidden creator, and a month of logged
feed history, all written for this test) goes through the loop with the commands the
README gives, against a real broker, a real ``feedrank serve`` and the real Flink join:

load the catalogue → replay the logged history → serve (no model yet: cold start) →
Rank → send rewards → join → train from Kafka → roll the version out → Rank again.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from feedrank.client import EventProducer, RankingClient, TopicNames
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import Settings, load_settings, settings_to_environment
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.registry import LocalModelRegistry
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.stack.topics import standard_topics
from feedrank.streaming.flink_environment import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_job import build_join_job
from feedrank.streaming.join_runner import job_config
from feedrank.v1 import events_pb2
from tests.integration.explore.test_serve_cli import wait_serving
from tests.support.kafka import CommittedReader, free_port

NEWSROOM = Path(__file__).parents[2] / "fixtures" / "newsroom"


def rows(name: str) -> list[dict[str, str]]:
    with (NEWSROOM / name).open(newline="") as file:
        return list(csv.DictReader(file))


POSTS = {row["post_id"]: row for row in rows("posts.csv")}
READERS = {row["user_id"]: row for row in rows("users.csv") if row["plan"] != "newsroom"}
FOLLOWS: dict[str, set[str]] = {}
for edge in rows("graph.csv"):
    if edge["op"] == "follow":
        FOLLOWS.setdefault(edge["user_id"], set()).add(edge["target_id"])
HIDDEN = ("elisa.rocha", "desk-esportes")  # graph.csv: she hid the sports desk
NEWCOMERS = ("gabriela.nunes", "zawadi.achieng")  # readers with no logged history


@dataclasses.dataclass
class Newsroom:
    settings: Settings
    environment: dict[str, str]
    root: Path

    def feedrank(self, *arguments: str, timeout_s: float = 300) -> str:
        """A ``feedrank`` command as a user types it; its output, or a failed test."""
        done = subprocess.run(
            [sys.executable, "-m", "feedrank.cli.main", *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, f"feedrank {' '.join(arguments)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def set_plan(self, version: str) -> None:
        plan = ServingPlan((ArmPlan("stable", version, 1.0),), "")
        staging = self.root / "plan.json.tmp"
        staging.write_text(plan.to_json())
        staging.replace(self.root / "plan.json")


@pytest.fixture
def newsroom(kafka: KafkaBroker, tmp_path: Path) -> Newsroom:
    prefix = f"newsroom-{uuid.uuid4().hex[:8]}"
    names = ("decisions", "rewards", "examples", "metrics", "dlq", "posts", "users", "graph")
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={name: f"{prefix}.{name}" for name in names},
        paths={"state_dir": tmp_path / "state", "registry_dir": tmp_path / "registry"},
        explore={
            "plan_file": tmp_path / "plan.json",
            "plan_poll_interval_s": 0.2,
            "max_post_age_days": 36_500,  # the fixture's articles keep their 2026 dates
        },
    )
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    ensure_topics(admin, standard_topics(settings.topics))  # entity topics included
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
    environment.update(settings_to_environment(settings))
    return Newsroom(settings, environment, tmp_path)


@contextlib.contextmanager
def serving(newsroom: Newsroom) -> Iterator[RankingClient]:
    """``feedrank serve`` with one worker, and a client for it."""
    port = free_port()
    log_file = newsroom.root / "serve.log"
    command = [sys.executable, "-m", "feedrank.cli.main", "serve", "--workers", "1"]
    command += ["--port", str(port), "--metrics-port", str(free_port())]
    with log_file.open("w") as log:
        process = subprocess.Popen(
            command, env=newsroom.environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_serving(f"127.0.0.1:{port}", process, timeout_s=120)  # type: ignore[arg-type]
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{log_file.read_text()}") from None
        with RankingClient(f"127.0.0.1:{port}", timeout_s=10) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=60)


def run_join(settings: Settings) -> None:
    """The production join job over everything in the topics, then stop (bounded)."""
    run_id = uuid.uuid4().hex[:8]
    config = dataclasses.replace(
        job_config(settings),
        bounded=True,
        group_id=f"newsroom-join-{run_id}",
        transactional_id_prefix=f"newsroom-join-{run_id}",
    )
    stream_env, table_env = create_stream_environment(
        settings,
        FlinkJobOptions(parallelism=1, checkpoint_interval_s=1.0),
        extra={"restart-strategy.type": "none"},
    )
    build_join_job(stream_env, table_env, config)
    environment = dict(os.environ)
    try:
        stream_env.execute("newsroom-join")
    finally:
        # Beam's in-process worker pool writes its own PYTHONPATH into os.environ: put
        # this process's environment back, or every later subprocess inherits it.
        os.environ.clear()
        os.environ.update(environment)


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f} s: {what}"
        time.sleep(0.2)


def test_a_newsrooms_own_data_goes_through_the_whole_loop(
    newsroom: Newsroom, jars: JarLocations, consume: CommittedReader
) -> None:
    # 1. The catalogue: articles, readers and desks, follows and a hidden creator.
    for kind, name in (("users", "users.csv"), ("graph", "graph.csv"), ("posts", "posts.csv")):
        output = newsroom.feedrank("catalogue", "load", str(NEWSROOM / name), "--kind", kind)
        assert "loaded" in output, output
    # 2. A month of logged feed history, as decisions and rewards.
    output = newsroom.feedrank("replay", str(NEWSROOM / "history.csv"))
    assert "72" in output, output  # decisions

    # 3. Serve with no model yet: every reader gets a feed of their own language's articles.
    with serving(newsroom) as client:
        first = {}
        for user, reader in READERS.items():
            feed = client.rank(user, limit=6)
            assert feed.post_ids, f"no feed for {user}"
            languages = {POSTS[post]["language"].lower() for post in feed.post_ids}
            assert languages == {reader["language"].lower()}, (user, feed.post_ids)
            assert all(0 < item.propensity <= 1 for item in feed.items)
            first[user] = feed
        elisa = client.rank(HIDDEN[0], limit=20)
        assert all(POSTS[post]["creator_id"] != HIDDEN[1] for post in elisa.post_ids)
        initial_version = first["ana.souza"].model_version

        # 4. Readers engage with the desks they follow, through the client.
        topics = newsroom.settings.topics
        names = TopicNames(
            posts=topics.posts, users=topics.users, graph=topics.graph, rewards=topics.rewards
        )
        liked = 0
        with EventProducer(newsroom.settings.kafka.bootstrap, topics=names) as producer:
            for user, feed in first.items():
                for post in feed.post_ids:
                    if POSTS[post]["creator_id"] in FOLLOWS.get(user, set()):
                        producer.send_reward(
                            decision_id=feed.decision_id, post_id=post, user_id=user, type="like"
                        )
                        liked += 1
        assert liked > 0
        served = consume(topics.decisions, 72 + len(first) + 1, timeout_s=60)
        assert len(served) >= 72 + len(first)

        # 5. The join labels the history and the served feeds; train on its examples.
        run_join(newsroom.settings)
        examples = consume(topics.examples, 288, timeout_s=60)
        assert len(examples) >= 288
        labelled = [
            events_pb2.LabelledExample.FromString(record.value() or b"") for record in examples
        ]
        assert any(example.catalogue_version for example in labelled)  # served: compact
        trained = newsroom.feedrank(
            "train", "--from-kafka", "--max-epochs", "3", "--min-auc", "0", "--json"
        )
        metrics = json.loads(next(line for line in trained.splitlines() if line.startswith("{")))
        assert metrics["examples"] >= 288
        assert "left out" not in trained  # served (compact) examples re-joined, none skipped
        assert metrics["auc"] > 0.5, metrics  # readers like the desks they follow: learnable
        latest = LocalModelRegistry(newsroom.settings.paths.registry).latest()
        assert latest is not None
        assert latest.version != initial_version

        # 6. Roll it out: the workers swap to it, and it serves the newsroom's articles.
        newsroom.set_plan(latest.version)
        eventually(
            lambda: client.rank("amina.otieno", limit=6).model_version == latest.version,
            f"serving {latest.version}",
        )
        for user, reader in READERS.items():
            feed = client.rank(user, limit=6)
            assert feed.model_version == latest.version
            assert set(feed.post_ids) <= set(POSTS)
            assert not set(feed.post_ids) & set(first[user].post_ids), "served twice"
            languages = {POSTS[post]["language"].lower() for post in feed.post_ids}
            assert languages <= {reader["language"].lower()}, (user, feed.post_ids)
            if user in NEWCOMERS:  # no history: most of their language's articles are unseen
                assert feed.post_ids, f"{latest.version} served {user} nothing"
