"""Online learning in the loop: does a stream of its own feedback keep improving a model?

    .venv/bin/python -m benchmarks.online_quality          # full run (minutes)
    .venv/bin/python -m benchmarks.online_quality --smoke --json

The closed loop of ``make demo`` without the processes around it, so that its learning
dynamics can be measured in minutes and on many more users than the demo reaches:

1. **bootstrap** - the batch trainer (``feedrank train``) fits a model on
   ``--bootstrap-examples`` uniformly logged simulated examples (historical logs);
2. **serve and learn** - the simulator logs slates with the *serving* model
   (epsilon-greedy, as the explore service does), and the online learner
   (:class:`OnlineLearner`, the update ``feedrank learn`` applies) takes every example in
   micro-batches. Every ``--publish-every`` examples the online model is "published":
   a copy becomes the serving model, as a registry version swapped in would.
   Rewards are labelled at once here (the join's reward window is skipped).

Baselines measured in the same run, on the same candidate pools (10 slots from 100
random same-language posts, expected engagement = oracle probability at each shown
position, no sampling noise): the **static bootstrap** model, **random**, and the
**ORACLE** (the behaviour model's hidden parameters; evaluation only). Reported per
publication: online ÷ oracle, online ÷ bootstrap, the rolling AUC of the stream.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch

from benchmarks.training_quality import configs, engagement_rates
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.examples import batch_from_examples
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.learners.metrics import roc_auc
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world import WorldConfig, generate_world


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--bootstrap-examples", type=int, default=60_000)
    parser.add_argument("--online-examples", type=int, default=240_000)
    parser.add_argument("--publish-every", type=int, default=30_000)
    parser.add_argument("--micro-batch", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="online Adam LR")
    parser.add_argument("--inverse-propensity", action="store_true")
    parser.add_argument("--eval-decisions", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.posts, args.bootstrap_examples = 100, 600, 3_000
        args.online_examples, args.publish_every, args.eval_decisions = 4_000, 2_000, 20
    return args


def fresh_copy(model: JointModel, learning_rate: float) -> JointModel:
    """The model as a registry version would load it: weights only, new optimiser."""
    step = StepConfig(learning_rate=learning_rate, weight_decay=model.config.weight_decay)
    return JointModel(copy.deepcopy(model.two_tower), copy.deepcopy(model.ranker), step)


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)
    started = time.perf_counter()
    creators = max(args.users // 10, 50)
    world = generate_world(
        WorldConfig(num_users=args.users, num_creators=creators, num_posts=args.posts)
    )
    topics = np.asarray(world.posts.topics)
    two_tower, ranker = configs()
    simulator = ExampleSimulator(world, SimulationConfig())
    log(f"bootstrap: {args.bootstrap_examples:,} uniformly logged examples")
    history = batch_from_examples(simulator.examples(args.bootstrap_examples), topics=topics)
    trainer = BatchTrainer(
        TrainerConfig(batch_size=256, max_epochs=6, patience=1), two_tower=two_tower, ranker=ranker
    )
    report = trainer.fit(history)
    bootstrap = trainer.model
    learner = OnlineLearner(
        fresh_copy(bootstrap, args.learning_rate),
        OnlineLearnerConfig(
            step=StepConfig(learning_rate=args.learning_rate),
            inverse_propensity=args.inverse_propensity,
        ),
    )
    serving = fresh_copy(learner.model, args.learning_rate)
    simulator.scorer = serving.score_candidates

    def evaluate() -> dict[str, float]:
        return engagement_rates(
            world,
            simulator.store,
            {"online": serving, "bootstrap": bootstrap},
            simulator.now_ms,
            args.eval_decisions,
            seed=1,
        )

    curve: list[dict[str, float]] = []
    rates = evaluate()
    curve.append(point(0, rates, float("nan"), float("nan")))
    log(f"start: online/oracle {curve[-1]['online_over_oracle']}")
    learned = 0
    while learned < args.online_examples:
        examples = simulator.examples(args.publish_every)
        labels, predictions = [], []
        for start in range(0, len(examples), args.micro_batch):
            batch = batch_from_examples(examples[start : start + args.micro_batch], topics=topics)
            predictions.append(learner.predict_proba(batch))
            labels.append(batch.labels)
            learner.learn(batch)
        learned += len(examples)
        stream_auc = roc_auc(np.concatenate(labels), np.concatenate(predictions))
        logged_rate = float(np.concatenate(labels).mean())
        serving = fresh_copy(learner.model, args.learning_rate)  # "publish" and swap in
        simulator.scorer = serving.score_candidates
        rates = evaluate()
        curve.append(point(learned, rates, stream_auc, logged_rate))
        log(
            f"{learned:>9,} examples: online/oracle {curve[-1]['online_over_oracle']}, "
            f"online/bootstrap {curve[-1]['online_over_bootstrap']}, stream AUC {stream_auc:.3f}"
        )
    final = curve[-1]
    result = {
        "settings": {
            key: getattr(args, key)
            for key in (
                "users",
                "posts",
                "bootstrap_examples",
                "online_examples",
                "publish_every",
                "micro_batch",
                "learning_rate",
                "inverse_propensity",
            )
        },
        "bootstrap_auc": round(report.metrics["auc"], 4),
        "bootstrap_over_oracle": curve[0]["bootstrap_over_oracle"],
        "final_online_over_oracle": final["online_over_oracle"],
        "final_online_over_bootstrap": final["online_over_bootstrap"],
        "final_online_over_random": final["online_over_random"],
        "best_online_over_oracle": max(entry["online_over_oracle"] for entry in curve),
        "curve": curve,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps({key: value for key, value in result.items() if key != "curve"}, indent=2))
    print("examples  online/oracle  online/bootstrap  online/random  stream AUC  logged rate")
    for entry in curve:
        print(
            "{examples:>8}  {online_over_oracle:>13}  {online_over_bootstrap:>16}  "
            "{online_over_random:>13}  {stream_auc:>10}  {logged_rate:>11}".format(**entry)
        )


def point(
    examples: int, rates: dict[str, float], stream_auc: float, logged_rate: float
) -> dict[str, float]:
    return {
        "examples": examples,
        "online_over_oracle": round(rates["online"] / rates["oracle"], 3),
        "bootstrap_over_oracle": round(rates["bootstrap"] / rates["oracle"], 3),
        "online_over_bootstrap": round(rates["online"] / rates["bootstrap"], 3),
        "online_over_random": round(rates["online"] / rates["random"], 3),
        "stream_auc": round(stream_auc, 4),
        "logged_rate": round(logged_rate, 4),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
