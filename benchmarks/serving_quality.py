"""Where served engagement goes against the oracle: retrieval, ranking, rules, exploration.

    .venv/bin/python -m benchmarks.serving_quality            # the demo's world and bootstrap
    .venv/bin/python -m benchmarks.serving_quality --smoke --json

Trains the bootstrap model as ``feedrank up`` does (``feedrank train --simulate N
--rounds R``: history that ends before the world starts), publishes it to a temporary
registry and loads it as an explore worker does. Then it serves feeds through the real
pipeline in process: retrieval, ranker, rules and exploration. Feeds come a simulated
minute apart (``--feed-interval-s``) from the world's start, to users drawn by their
session rates. Each feed's impressions and engagements update that service's store, as
the feature updater would.

Reported per shown item, each over the ORACLE's expected engagement for the same user
at the same time (its best fresh posts that the configured service has not served the
user yet, as the demo's oracle; it reads hidden parameters):

* the oracle free to repeat posts the user was served (no product rule allows it): how
  far above the oracle that bar lies;
* the oracle over the retrieved candidates (not yet served): what retrieval leaves;
* the ranker's order of the retrieved candidates, before any rule;
* served greedily: rules, no exploration (a service and store of its own);
* served with the configured exploration: expected, and realised within the reward
  window (what the demo's report counts);
* served with each ``--also`` exploration (e.g. ``--also epsilon_greedy:0.05 --also
  plackett_luce:0.1``, the number being ε or the temperature), a service and store of
  its own each, so exploration settings compare on one bootstrap;
* random fresh posts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedrank.core.clock import ManualClock
from feedrank.core.exploration import (
    ExplorationPolicy,
    ExplorationSettings,
    policy_from_name,
    policy_from_settings,
)
from feedrank.core.feature_schema import IntArray, post_index, user_id
from feedrank.core.settings import Settings, load_settings
from feedrank.explore.deadline import Deadline
from feedrank.explore.model_loader import ModelLoader, check_user_ids
from feedrank.explore.queries import RankQuery
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.batch.trainer import BatchTrainer
from feedrank.learners.bootstrap import model_configs, trainer_config
from feedrank.learners.training_run import TrainingRun, publish_run
from feedrank.registry import LocalModelRegistry
from feedrank.simulate.baselines import (
    SeenPosts,
    expected_rate,
    fresh_posts,
    oracle_feed,
    random_feed,
)
from feedrank.simulate.engagement import ENGAGED_TYPES, engaged_posts
from feedrank.simulate.training_history import simulated_history
from feedrank.simulate.world import BehaviourModel, World
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.simulate.world_views import local_world, world_topics

FEED_SIZE = 20
FEED_INTERVAL_MS = 60_000


def bootstrap(settings: Settings, world: World, examples: int, rounds: int) -> TrainingRun:
    """The bootstrap model of ``feedrank up``: ``rounds`` rounds of simulated history."""
    config = trainer_config(settings)
    two_tower, ranker = model_configs(settings)
    history = simulated_history(
        settings, world, world_topics(world), examples_per_round=examples, seed=0, rounds=rounds
    )
    run = history.first_run()
    for round_number in range(rounds):
        if round_number:
            run = history.next_round(run, 0)
        trainer = BatchTrainer(config, two_tower=two_tower, ranker=ranker)
        run = run.trained(trainer, trainer.fit(run.batch))
    return history.for_publishing(run)


def load_published(settings: Settings, world: World, run: TrainingRun, at_ms: int) -> ServingModel:
    """The run published to a temporary registry and loaded as an explore worker does."""
    assert run.report is not None
    registry = LocalModelRegistry(Path(tempfile.mkdtemp(prefix="feedrank-serving-quality-")))
    version = publish_run(registry, run, dict(run.report.metrics))
    catalogue = catalogue_from_world(world)
    loader = ModelLoader(
        registry,
        InMemoryFeatureStore(catalogue),
        catalogue,
        check_user_ids=check_user_ids(catalogue, 20),
        settings=settings.explore,
        clock=ManualClock(at_ms),
    )
    return loader.load(version)


class Feeds:
    """One explore service with a store of its own, served and updated feed by feed."""

    def __init__(
        self,
        settings: Settings,
        world: World,
        model: ServingModel,
        policy: ExplorationPolicy,
        clock: ManualClock,
    ) -> None:
        self.store = InMemoryFeatureStore(catalogue_from_world(world))
        self.service = ExploreService(
            store=self.store, settings=settings.explore, policy=policy, clock=clock
        )
        self.service.load(model)
        self.rng = np.random.default_rng(2)  # the users' responses to this service's feeds

    def serve(self, user: int, at_ms: int) -> IntArray:
        query = RankQuery(
            user_id=user_id(user),
            limit=FEED_SIZE,
            request_time_ms=at_ms,
            language=None,
            country=None,
            surface="explore",
        )
        result = self.service.rank(query, Deadline.never())
        return np.array([post_index(item.post_id) for item in result.items], dtype=np.int64)

    def observe(self, user: int, shown: IntArray, rewards: list[Any], at_ms: int) -> None:
        """What the feature updater applies: impressions, then each engagement."""
        self.store.record_impressions(shown, at_ms)
        for reward in rewards:
            if reward.type in ENGAGED_TYPES:
                posts = np.array([post_index(reward.post_id)], dtype=np.int64)
                self.store.record_engagements(user_id(user), posts, reward.ts_ms)


def exploration_variant(spec: str) -> tuple[str, ExplorationPolicy]:
    """``NAME[:PARAM]`` (PARAM: ε of epsilon_greedy, temperature of plackett_luce) as
    (label, policy), e.g. ``plackett_luce:0.1`` -> ("plackett_luce_0.1", PlackettLuce(0.1))."""
    name, _, parameter = spec.partition(":")
    settings = ExplorationSettings(policy=name)  # its defaults where PARAM is absent
    try:
        if parameter and name == "epsilon_greedy":
            settings = replace(settings, epsilon=float(parameter))
        elif parameter and name == "plackett_luce":
            settings = replace(settings, temperature=float(parameter))
        policy = policy_from_settings(settings)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{spec!r}: {error}") from error
    return (f"{name}_{parameter}" if parameter else name), policy


def measure(
    settings: Settings,
    world: World,
    model: ServingModel,
    feeds: int,
    variants: Sequence[tuple[str, ExplorationPolicy]] = (),
    interval_ms: int = FEED_INTERVAL_MS,
) -> dict[str, float]:
    start = world.config.start_ms
    clock = ManualClock(start)
    behaviour = BehaviourModel(world, seed=settings.world.behaviour_seed)
    explore = settings.explore
    configured = policy_from_name(
        explore.exploration, epsilon=explore.epsilon, temperature=explore.temperature
    )
    greedy = Feeds(settings, world, model, policy_from_name("greedy"), clock)
    served = Feeds(settings, world, model, configured, clock)
    others = {
        f"served_{label}": Feeds(settings, world, model, policy, clock)
        for label, policy in variants
    }
    window_ms = int(settings.time.reward_window.total_seconds() * 1000)
    rng = np.random.default_rng(1)
    sessions = np.asarray(world.users.sessions_per_day, dtype=np.float64)
    users = rng.choice(world.num_users, feeds, p=sessions / sessions.sum()).tolist()
    serving = {"greedy": greedy, "served": served, **others}
    names = (
        "oracle",
        "oracle_repeating",
        "retrieved_oracle",
        "ranker",
        "greedy",
        "served",
        "served_realised",
    )
    sums = dict.fromkeys((*names, *others, *(f"{name}_realised" for name in others), "random"), 0.0)
    seen = SeenPosts()  # what the configured service has served each user
    for number, user in enumerate(users):
        at_ms = start + number * interval_ms
        if number:
            clock.advance(interval_ms)

        def rate(posts: IntArray, user: int = user, at_ms: int = at_ms) -> float:
            return expected_rate(behaviour, user, posts[:FEED_SIZE], at_ms)

        fresh = fresh_posts(world, at_ms, settings.explore.max_post_age_days)
        eligible = seen.unseen(user, fresh)
        sums["oracle"] += rate(oracle_feed(behaviour, user, eligible, FEED_SIZE, at_ms))
        sums["oracle_repeating"] += rate(oracle_feed(behaviour, user, fresh, FEED_SIZE, at_ms))
        sums["random"] += rate(random_feed(eligible, FEED_SIZE, rng))
        service = served.service  # the candidates the served feed is chosen from
        features = served.store.user_features(user_id(user), at_ms)
        query = RankQuery(user_id(user), FEED_SIZE, at_ms, None, None, "explore")
        retrieval = service.retrieve(model, features, query)
        candidates = retrieval.post_indices
        retrieved = seen.unseen(user, candidates)
        sums["retrieved_oracle"] += rate(oracle_feed(behaviour, user, retrieved, FEED_SIZE, at_ms))
        scored = service.score(model, features, query, retrieval)
        sums["ranker"] += rate(candidates[np.argsort(-scored.scores, kind="stable")])
        for name, feed in serving.items():
            shown = feed.serve(user, at_ms)
            sums[name] += rate(shown)
            rewards = behaviour.respond(
                user, shown, decision_id=f"{name}-{number}", impression_ms=at_ms, rng=feed.rng
            )
            feed.observe(user, shown, rewards, at_ms)
            if feed is served:
                seen.add(user, shown)
            if name != "greedy":
                engaged = engaged_posts(rewards, at_ms + window_ms)
                sums[f"{name}_realised"] += len(engaged) / max(shown.size, 1)
    oracle = sums.pop("oracle")
    return {f"{name}_over_oracle": round(value / oracle, 3) for name, value in sums.items()}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("deploy/local/demo.toml"))
    parser.add_argument("--examples", type=int, default=100_000, help="per bootstrap round")
    parser.add_argument("--rounds", type=int, default=2, help="bootstrap rounds")
    parser.add_argument("--feeds", type=int, default=600)
    parser.add_argument(
        "--feed-interval-s",
        type=float,
        default=FEED_INTERVAL_MS / 1000,
        help="simulated seconds between feeds (the demo serves one every 34)",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        type=exploration_variant,
        metavar="POLICY[:PARAM]",
        help="another exploration to serve beside the configured one, e.g. epsilon_greedy:0.05 "
        "or plackett_luce:0.1 (PARAM: epsilon or temperature); repeatable",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)
    started = time.perf_counter()
    overrides: dict[str, Any] = {}
    if args.smoke:
        args.examples, args.rounds, args.feeds = 3_000, 1, 20
        overrides["world"] = {"num_users": 300, "num_creators": 60, "num_posts": 3_000}
    settings = load_settings(args.config, **overrides)
    variants: list[tuple[str, ExplorationPolicy]] = args.also
    world = local_world(settings)
    log(f"bootstrap: {args.rounds} x {args.examples:,} simulated examples")
    run = bootstrap(settings, world, args.examples, args.rounds)
    assert run.report is not None
    model = load_published(settings, world, run, world.config.start_ms)
    log(f"serving {args.feeds} feeds")
    result: dict[str, Any] = {
        "examples_per_round": args.examples,
        "rounds": args.rounds,
        "feeds": args.feeds,
        "feed_interval_s": args.feed_interval_s,
        "validation_auc": round(run.report.metrics["auc"], 4),
        "exploration": settings.explore.exploration,
        **measure(settings, world, model, args.feeds, variants, int(args.feed_interval_s * 1000)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name:>34}: {value}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
