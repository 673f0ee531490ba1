"""Online learner throughput: labelled examples applied per second on this machine.

    .venv/bin/python -m benchmarks.online_learner            # full run
    .venv/bin/python -m benchmarks.online_learner --smoke --json

Examples come from the simulated world and are serialised as the join writes them to
``feedrank.examples``. Two measurements in the same run, with the shipped model sizes
(default two-tower and ranker configs) and one torch thread:

* **micro-batched** (the learner as it runs): per batch of ``--micro-batch`` records,
  decode through the codec, build the batch, take one optimiser step whose forward pass
  also scores the batch for the streaming metrics (prequential, before the update), and
  update the river metrics; also the step alone on pre-built batches;
* **fake negatives** (the learner's default): decisions decoded into a negative per shown
  item plus the join's positives, a micro-batch of about the same size per step;
* **per-example baseline**: the same pipeline one record at a time.

Target: >= 20,000 examples/s micro-batched (no Kafka I/O in this number).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import numpy.typing as npt
import torch

from feedrank.core import codecs
from feedrank.learners.examples import LoggedExample, batch_from_examples
from feedrank.learners.online.feedback import fake_negatives, slate_decision
from feedrank.learners.online.learner import OnlineLearner
from feedrank.learners.online.monitoring import StreamMonitor
from feedrank.learners.online.readers import SHOWN_ITEMS_PER_DECISION
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world import WorldConfig, generate_world
from feedrank.v1 import events_pb2


def pipeline_rate(
    learner: OnlineLearner,
    records: list[bytes],
    topics: npt.NDArray[np.float32],
    size: int,
    monitor: StreamMonitor,
) -> float:
    """Examples/s of decode -> batch -> score -> step, ``size`` records at a time."""
    started = time.perf_counter()
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        examples = [codecs.decode(events_pb2.LabelledExample, record) for record in chunk]
        batch = batch_from_examples(examples, topics=topics)
        _, probabilities = learner.learn_scored(batch)  # as the consumer does
        monitor.update(batch.labels, probabilities)
    return len(records) / (time.perf_counter() - started)


def fake_negative_rate(
    learner: OnlineLearner,
    decisions: list[bytes],
    positives: list[bytes],
    topics: npt.NDArray[np.float32],
    micro_batch: int,
) -> float:
    """Examples/s of the default path: decode decisions into fake negatives and the
    join's positives, then batch -> step (a decision per SHOWN_ITEMS_PER_DECISION)."""
    started, learned = time.perf_counter(), 0
    per_poll = max(1, micro_batch // SHOWN_ITEMS_PER_DECISION)  # as the consumer polls
    monitor = StreamMonitor()
    positives_per_poll = math.ceil(len(positives) * per_poll / max(len(decisions), 1))
    for poll, start in enumerate(range(0, len(decisions), per_poll)):
        examples: list[LoggedExample] = []
        for record in decisions[start : start + per_poll]:
            examples += fake_negatives(codecs.decode(events_pb2.Decision, record))
        for record in positives[poll * positives_per_poll : (poll + 1) * positives_per_poll]:
            examples.append(codecs.decode(events_pb2.LabelledExample, record))
        batch = batch_from_examples(examples, topics=topics)
        _, probabilities = learner.learn_scored(batch)
        monitor.update(batch.labels, probabilities)
        learned += len(batch)
    return learned / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--baseline-examples", type=int, default=400)
    parser.add_argument("--micro-batch", type=int, default=1_024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.examples, args.baseline_examples = 3_000, 50
    torch.set_num_threads(args.threads)
    world = generate_world(WorldConfig(num_users=2_000, num_creators=300, num_posts=20_000))
    topics = np.asarray(world.posts.topics)
    simulator = ExampleSimulator(world, SimulationConfig(slate_size=20, pool_size=100))
    examples = simulator.examples(args.examples + args.baseline_examples)
    records = [codecs.encode(example) for example in examples]

    def new_learner() -> OnlineLearner:
        return OnlineLearner.new(two_tower=TwoTowerConfig(), ranker=RankerConfig())

    warm = new_learner()
    pipeline_rate(warm, records[: args.micro_batch * 2], topics, args.micro_batch, StreamMonitor())
    learner = new_learner()
    micro = pipeline_rate(
        learner, records[: args.examples], topics, args.micro_batch, StreamMonitor()
    )
    batches = [
        batch_from_examples(examples[start : start + args.micro_batch], topics=topics)
        for start in range(0, args.examples, args.micro_batch)
    ]
    started = time.perf_counter()
    for batch in batches:
        learner.learn(batch)
    step_only = args.examples / (time.perf_counter() - started)
    baseline = pipeline_rate(new_learner(), records[args.examples :], topics, 1, StreamMonitor())
    slates: dict[str, list[events_pb2.LabelledExample]] = {}
    for example in examples[: args.examples]:
        slates.setdefault(example.decision_id, []).append(example)
    decisions = [codecs.encode(slate_decision(slate)) for slate in slates.values()]
    positives = [codecs.encode(ex) for ex in examples[: args.examples] if ex.engaged]
    fake = fake_negative_rate(new_learner(), decisions, positives, topics, args.micro_batch)
    report = {
        "examples": args.examples,
        "micro_batch": args.micro_batch,
        "threads": args.threads,
        "examples_per_s": round(micro, 1),
        "fake_negatives_examples_per_s": round(fake, 1),
        "step_only_examples_per_s": round(step_only, 1),
        "per_example_baseline_per_s": round(baseline, 1),
        "speedup_vs_baseline": round(micro / baseline, 1),
        "target_examples_per_s": 20_000,
        "target_met": min(micro, fake) >= 20_000,  # both feedback paths
    }
    if args.json:
        print(json.dumps(report))
        return
    for name, value in report.items():
        print(f"{name:>28}: {value}")


if __name__ == "__main__":
    main()
