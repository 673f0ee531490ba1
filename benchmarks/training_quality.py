"""Training quality on the simulated world: held-out AUC and the engagement it buys.

    .venv/bin/python -m benchmarks.training_quality          # full run
    .venv/bin/python -m benchmarks.training_quality --smoke --json

Two rounds, as the closed loop bootstraps: round 1 logs uniform-random slates; the
model trained on it then logs round 2 (epsilon-greedy, as the explore service would),
and the final model trains on both. Reported:

* held-out AUC and log loss of the engagement model (the ranker) on the latest
  decisions (round 2), target >= 0.80, and the retrieval model's recall@K;
* the engagement rate per impression when each policy fills 10 slots from the same
  candidate pools: trained model, untrained (seeded init) model, random, and the
  ORACLE (the behaviour model's hidden parameters; evaluation only). Expected
  engagement is the oracle probability at each shown position, so no sampling noise.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from feedrank.core.features.schema import IntArray
from feedrank.core.features.store import InMemoryFeatureStore
from feedrank.core.models.ranker import RankerConfig
from feedrank.core.models.two_tower import TwoTowerConfig
from feedrank.core.world import BehaviourModel, World, WorldConfig, generate_world
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.examples import batch_from_examples, concat
from feedrank.learners.joint import JointModel
from feedrank.learners.simulation import ExampleSimulator, SimulationConfig

SLOTS = 10


def configs() -> tuple[TwoTowerConfig, RankerConfig]:
    two_tower = TwoTowerConfig(
        embedding_dim=32, user_id_buckets=4_096, post_id_buckets=16_384, hidden_sizes=(64, 64)
    )
    ranker = RankerConfig(
        tower_dim=32, user_id_buckets=4_096, post_id_buckets=16_384, hidden_sizes=(64, 32)
    )
    return two_tower, ranker


def engagement_rates(
    world: World,
    store: InMemoryFeatureStore,
    models: dict[str, JointModel],
    at_ms: int,
    decisions: int,
    seed: int,
) -> dict[str, float]:
    """Expected engagements per impression of each policy on the same pools."""
    oracle = BehaviourModel(world)  # ORACLE: evaluation only
    rng = np.random.default_rng(seed)
    positions = np.arange(SLOTS)
    totals = dict.fromkeys([*models, "random", "oracle"], 0.0)
    for _ in range(decisions):
        user_row = int(rng.integers(world.num_users))
        user = store.user_features(f"u{user_row}", at_ms)
        same_language = np.flatnonzero(np.asarray(world.posts.language) == user.language)
        pool: IntArray = rng.choice(same_language, size=min(100, same_language.size), replace=False)
        features = store.post_features(pool, at_ms)
        picks: dict[str, IntArray] = {
            name: pool[np.argsort(-model.score_candidates(user, features, at_ms))[:SLOTS]]
            for name, model in models.items()
        }
        picks["random"] = pool[:SLOTS]
        picks["oracle"] = oracle.oracle_top_k(user_row, pool, SLOTS, at_ms)
        for name, shown in picks.items():
            probabilities = oracle.engagement_probability(
                user_row, shown, positions[: shown.size], at_ms
            )
            totals[name] += float(probabilities.sum())
    return {name: total / (decisions * SLOTS) for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=150_000, help="per round")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--posts", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--eval-decisions", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.examples, args.users, args.posts, args.epochs, args.eval_decisions = (
            3_000,
            50,
            400,
            1,
            20,
        )
    torch.set_num_threads(1)
    started = time.perf_counter()
    world = generate_world(
        WorldConfig(num_users=args.users, num_creators=100, num_posts=args.posts)
    )
    topics = np.asarray(world.posts.topics)
    two_tower, ranker = configs()
    trainer_config = TrainerConfig(batch_size=256, max_epochs=args.epochs)
    simulator = ExampleSimulator(world, SimulationConfig())
    first = batch_from_examples(simulator.examples(args.examples), topics=topics)
    bootstrap = BatchTrainer(trainer_config, two_tower=two_tower, ranker=ranker)
    bootstrap.fit(first)
    simulator.scorer = bootstrap.model.score_candidates
    second = batch_from_examples(simulator.examples(args.examples), topics=topics)
    final = BatchTrainer(trainer_config, two_tower=two_tower, ranker=ranker)
    report = final.fit(concat([first, second]))
    rates = engagement_rates(
        world,
        simulator.store,
        {"trained": final.model, "untrained": JointModel.new(two_tower, ranker)},
        simulator.now_ms,
        args.eval_decisions,
        seed=1,
    )
    result = {
        "held_out_auc": round(report.metrics["auc"], 4),
        "held_out_log_loss": round(report.metrics["log_loss"], 4),
        "retrieval_recall_at_50": round(report.metrics["recall_at_50"], 4),
        "auc_target_met": report.metrics["auc"] >= 0.80,
        "epochs": report.epochs,
        "logged_engagement_rate_round_1": round(float(first.labels.mean()), 4),
        "logged_engagement_rate_round_2": round(float(second.labels.mean()), 4),
        **{f"engagement_rate_{name}": round(rate, 4) for name, rate in rates.items()},
        "trained_over_oracle": round(rates["trained"] / rates["oracle"], 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name:>32}: {value}")


if __name__ == "__main__":
    main()
