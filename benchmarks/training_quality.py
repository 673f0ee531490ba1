"""Training quality on the simulated world: held-out AUC and the engagement it buys.

    .venv/bin/python -m benchmarks.training_quality          # full run
    .venv/bin/python -m benchmarks.training_quality --smoke --json

Rounds, as the closed loop bootstraps: round 1 logs uniform-random slates; the model
trained on every round so far logs the next one (epsilon-greedy, as the explore service
would), and the last model trains on all of them (``--rounds``, default 2). Reported:

* held-out AUC and log loss of the engagement model (the ranker, given the logged
  position as it is in training) on the latest decisions, target >= 0.80, and the
  retrieval model's recall@K;
* the engagement rate per impression when each policy fills 10 slots from the same
  candidate pools: trained model (scoring at position 0, as served), untrained (seeded
  init) model, random, and the ORACLE (the behaviour model's hidden parameters;
  evaluation only), with the trained model's ratio to each. Expected engagement is the
  oracle probability at each shown position, so no sampling noise;
* the curve: per round, the logged engagement rate, held-out AUC and trained ÷ oracle.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from feedrank.core.feature_schema import IntArray
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.examples import batch_from_examples, concat
from feedrank.learners.joint import JointModel
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world import BehaviourModel, World, WorldConfig, generate_world

SLOTS = 10
ROUNDS = 2


def configs() -> tuple[TwoTowerConfig, RankerConfig]:
    two_tower = TwoTowerConfig(
        embedding_dim=32,
        user_id_buckets=4_096,
        post_id_buckets=16_384,
        hidden_sizes=(64, 64),
        topic_dims=16,
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


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=150_000, help="per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--posts", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--eval-decisions", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.examples, args.rounds, args.users, args.posts = 3_000, 2, 50, 400
        args.epochs, args.eval_decisions = 1, 20
    return args


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)
    started = time.perf_counter()
    world = generate_world(
        WorldConfig(num_users=args.users, num_creators=100, num_posts=args.posts)
    )
    topics = np.asarray(world.posts.topics)
    two_tower, ranker = configs()
    trainer_config = TrainerConfig(batch_size=256, max_epochs=args.epochs, patience=1)
    simulator = ExampleSimulator(world, SimulationConfig())
    rounds = [batch_from_examples(simulator.examples(args.examples), topics=topics)]
    curve: list[dict[str, float]] = []
    while True:  # train on every round so far; the model logs the next one
        trainer = BatchTrainer(trainer_config, two_tower=two_tower, ranker=ranker)
        report = trainer.fit(concat(rounds))
        rates = engagement_rates(
            world,
            simulator.store,
            {"trained": trainer.model},
            simulator.now_ms,
            args.eval_decisions,
            seed=1,
        )
        curve.append(
            {
                "round": len(rounds),
                "logged_engagement_rate": round(float(rounds[-1].labels.mean()), 4),
                "held_out_auc": round(report.metrics["auc"], 4),
                "trained_over_oracle": round(rates["trained"] / rates["oracle"], 3),
            }
        )
        if len(rounds) == args.rounds:
            break
        simulator.scorer = trainer.model.score_candidates
        rounds.append(batch_from_examples(simulator.examples(args.examples), topics=topics))
    rates = engagement_rates(
        world,
        simulator.store,
        {"trained": trainer.model, "untrained": JointModel.new(two_tower, ranker)},
        simulator.now_ms,
        args.eval_decisions,
        seed=1,
    )
    result = {
        "rounds": args.rounds,
        "held_out_auc": round(report.metrics["auc"], 4),
        "held_out_log_loss": round(report.metrics["log_loss"], 4),
        "retrieval_recall_at_50": round(report.metrics["recall_at_50"], 4),
        "auc_target_met": report.metrics["auc"] >= 0.80,
        "epochs": report.epochs,
        **{f"engagement_rate_{name}": round(rate, 4) for name, rate in rates.items()},
        **{
            f"trained_over_{name}": round(rates["trained"] / rates[name], 3)
            for name in ("oracle", "untrained", "random")
        },
        "random_over_oracle": round(rates["random"] / rates["oracle"], 3),
        "oracle_target_met": rates["trained"] >= 0.8 * rates["oracle"],
        "curve": curve,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        if name != "curve":
            print(f"{name:>32}: {value}")
    print("round  logged rate  held-out AUC  trained/oracle")
    for point in curve:
        print(
            "{round:>5}  {logged_engagement_rate:>11}  {held_out_auc:>12}  "
            "{trained_over_oracle:>14}".format(**point)
        )


if __name__ == "__main__":
    main()
