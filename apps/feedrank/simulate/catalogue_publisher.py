"""The simulated apps' catalogue, sent as a real app sends it: entity events to Kafka.

Creators (as users: their country is the model's country of their posts), users and
posts of a generated world go to ``feedrank.users`` and ``feedrank.posts`` through
``feedrank.client.EventProducer``, with the world's observable attributes only. The ids
are the world's own (``p<row>``, ``u<row>``, ``c<row>``); every event carries the same
``ts_ms``, so publishing the same world again changes nothing.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from feedrank.client import EventProducer
from feedrank.core.entity_codecs import AGE_BUCKET_NAMES
from feedrank.core.feature_schema import COUNTRIES, LANGUAGES, post_id, user_id
from feedrank.simulate.world import World
from feedrank.simulate.world.catalogue import START_TS_MS, creator_id

LIVE_POSTS_METRIC = 'feedrank_explore_catalogue_posts{state="live"}'
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class Published:
    creators: int
    users: int
    posts: int
    seconds: float


def publish_world(
    world: World, producer: EventProducer, progress: Progress | None = None
) -> Published:
    """Send the world's creators, users and posts; returns once Kafka acknowledged all."""
    started = time.perf_counter()
    creators, users, posts = world.creators, world.users, world.posts
    for row in range(len(creators)):
        producer.upsert_user(
            creator_id(row),
            language=LANGUAGES[int(creators.language[row])],
            country=COUNTRIES[int(creators.country[row])],
            ts_ms=START_TS_MS,
        )
    _tell(progress, "creators", len(creators), len(creators))
    for row in range(len(users)):
        history = np.asarray(users.history_topics[row], dtype=np.float64)
        features: dict[str, float] = {
            "sessions_per_day": float(users.sessions_per_day[row]),
            "follow_count": float(users.follow_count[row]),
            "sensitive_filter": 1.0 if users.sensitive_filter[row] else 0.0,
        }
        features.update(
            {f"history:topic_{topic}": float(history[topic]) for topic in np.flatnonzero(history)}
        )
        producer.upsert_user(
            user_id(row),
            language=LANGUAGES[int(users.language[row])],
            country=COUNTRIES[int(users.country[row])],
            age_bucket=AGE_BUCKET_NAMES[int(users.age_bucket[row])],
            features=features,
            ts_ms=START_TS_MS,
        )
        if row % 20_000 == 0:
            _tell(progress, "users", row, len(users))
    _tell(progress, "users", len(users), len(users))
    followers = np.asarray(creators.followers, dtype=np.float64)
    rates = np.asarray(creators.engagement_rate, dtype=np.float64)
    for row in range(len(posts)):
        creator = int(posts.creator_index[row])
        weights = np.asarray(posts.topics[row], dtype=np.float64)
        topics = np.flatnonzero(weights)
        producer.upsert_post(
            post_id(row),
            creator_id=creator_id(creator),
            created_ms=int(posts.created_ms[row]),
            language=LANGUAGES[int(posts.language[row])],
            country=COUNTRIES[int(posts.country[row])] if posts.region_locked[row] else None,
            topics=[f"topic_{topic}" for topic in topics],
            topic_weights=weights[topics].tolist(),
            sensitive=bool(posts.sensitive[row]),
            embedding=np.asarray(posts.content[row], dtype=np.float64).tolist(),
            features={
                "creator_followers": float(followers[creator]),
                "creator_engagement_rate": float(rates[creator]),
            },
            ts_ms=START_TS_MS,
        )
        if row % 20_000 == 0:
            _tell(progress, "posts", row, len(posts))
    producer.flush(timeout_s=120.0)
    _tell(progress, "posts", len(posts), len(posts))
    return Published(len(creators), len(users), len(posts), time.perf_counter() - started)


def wait_until_served(
    metrics_url: str, posts: int, timeout_s: float, progress: Progress | None = None
) -> bool:
    """Wait until every explore worker serves ``posts`` posts, as its /metrics says (the
    smallest over workers); False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = _live_posts(metrics_url)
        _tell(progress, "posts served", live or 0, posts)
        if live is not None and live >= posts:
            return True
        time.sleep(1.0)
    return False


def _live_posts(metrics_url: str) -> int | None:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5.0) as response:  # noqa: S310 - our own
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(LIVE_POSTS_METRIC + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def _tell(progress: Progress | None, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)
