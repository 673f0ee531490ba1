"""The serve-restart benchmark's catalogue: synthetic users and posts, and the replay baseline.

Posts come from ``catalogue_ingest.PostMaker`` (32-d embedding, 1-3 topics, two
features), one user per ``POSTS_PER_USER`` posts, published with ``EventProducer`` a
chunk at a time; :func:`replay_only_s` times ``replay_catalogue`` over the same topics in
this process, the baseline a restart is compared with.
"""

from __future__ import annotations

import time

from benchmarks.catalogue_ingest import PostMaker
from benchmarks.progress import progress
from feedrank.catalogue.replay import replay_catalogue
from feedrank.client.events import EventProducer
from feedrank.core.clock import SystemClock
from feedrank.core.entity_codecs import AGE_BUCKET_NAMES
from feedrank.core.feature_schema import COUNTRIES, LANGUAGES
from feedrank.core.settings import Settings

POSTS_PER_USER = 50
CHUNK_POSTS = 10_000  # posts drawn, then produced, at a time: 1M never sit in memory

say = progress("serve-restart")


def publish_catalogue(producer: EventProducer, posts: int, users: int, seed: int) -> float:
    """``users`` users, then ``posts`` posts; posts/s of the posts' ``upsert_post`` calls
    and the final flush (each chunk's fields are drawn before its clock starts)."""
    now_ms = SystemClock().now_ms()
    for index in range(users):
        producer.upsert_user(
            f"u-{index}",
            language=LANGUAGES[index % len(LANGUAGES)],
            country=COUNTRIES[index % len(COUNTRIES)],
            age_bucket=AGE_BUCKET_NAMES[index % len(AGE_BUCKET_NAMES)],
            ts_ms=now_ms,
        )
    producer.flush(120.0)
    maker = PostMaker(seed, now_ms)
    producing = 0.0
    step = max(posts // 10, 1)
    for first in range(0, posts, CHUNK_POSTS):
        chunk = [maker.fields(index) for index in range(first, min(first + CHUNK_POSTS, posts))]
        started = time.perf_counter()
        for index, fields in enumerate(chunk, start=first):
            producer.upsert_post(f"post-{index}", ts_ms=now_ms, **fields)
        producing += time.perf_counter() - started
        done = first + len(chunk)
        if done // step > first // step or done == posts:
            say(f"produced {done:,}/{posts:,} posts")
    started = time.perf_counter()
    producer.flush(600.0)
    return posts / (producing + time.perf_counter() - started)


def replay_only_s(settings: Settings, posts: int) -> float:
    """The baseline: seconds to replay the topics in this process (consume, decode, apply)."""
    started = time.perf_counter()
    replayed = replay_catalogue(settings, SystemClock().now_ms)
    elapsed = time.perf_counter() - started
    if replayed.state.num_posts != posts or replayed.rejected:
        raise RuntimeError(
            f"the replay found {replayed.state.num_posts:,} posts of {posts:,} "
            f"({replayed.rejected:,} rejected)"
        )
    return elapsed
