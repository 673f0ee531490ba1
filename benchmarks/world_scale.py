"""How long a full-size world takes to build and serve from, and how much memory it holds.

    .venv/bin/python benchmarks/world_scale.py [--posts 1000000] [--users 100000]

Prints the generation time, the world's array bytes and the process's peak RSS, then
the latency of the hot paths: a 1,000-post point-in-time feature lookup at "now" and in
the past, a user lookup, and the behaviour model's response to a 50-post feed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np

from feedrank.core.feature_schema import user_id
from feedrank.core.time_units import MINUTE_MS
from feedrank.features.store import InMemoryFeatureStore
from feedrank.simulate.world.behaviour import BehaviourModel
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.simulate.world.config import WorldConfig
from feedrank.simulate.world.generator import generate_world


def _median_us(action: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--creators", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2_000)
    args = parser.parse_args()

    config = WorldConfig(num_users=args.users, num_creators=args.creators, num_posts=args.posts)
    rss_before = _peak_rss_mib()
    started = time.perf_counter()
    world = generate_world(config)
    generation_s = time.perf_counter() - started
    print(f"world: {args.posts:,} posts, {args.users:,} users, {args.creators:,} creators")
    print(f"  generation        {generation_s:8.2f} s")
    print(f"  array memory      {world.nbytes / 2**20:8.1f} MiB")
    print(f"  peak RSS          {_peak_rss_mib():8.1f} MiB (before: {rss_before:.1f} MiB)")

    started = time.perf_counter()
    store = InMemoryFeatureStore(catalogue_from_world(world))
    model = BehaviourModel(world, seed=1)
    print(f"  store + behaviour {time.perf_counter() - started:8.2f} s to build")

    rng = np.random.default_rng(0)
    now = config.start_ms
    for step in range(500):  # some history, so that lookups in the past have work to do
        store.record_impressions(rng.integers(0, args.posts, 50), now + step * MINUTE_MS)
        store.record_engagements(user_id(step), rng.integers(0, args.posts, 2), now + step)
    now += 500 * MINUTE_MS
    candidates = rng.integers(0, args.posts, 1_000)
    feed = candidates[:50]
    repeats = args.repeats
    print("latency (median)")
    timings = {
        "post_features(1,000) now": lambda: store.post_features(candidates, now),
        "post_features(1,000) 4h ago": lambda: store.post_features(candidates, now - 240 * 60_000),
        "user_features": lambda: store.user_features(user_id(7), now),
        "respond(50 posts)": lambda: model.respond(
            7, feed, decision_id="bench", impression_ms=now, rng=rng
        ),
        "oracle_top_k(1,000 -> 50)": lambda: model.oracle_top_k(7, candidates, 50, now),
    }
    for name, action in timings.items():
        print(f"  {name:30s} {_median_us(action, repeats):8.1f} us")


if __name__ == "__main__":
    main()
