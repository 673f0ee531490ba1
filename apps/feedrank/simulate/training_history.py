"""Simulated history to train the demo's first model on (``feedrank train --simulate N``).

A real deployment trains its first model on the logs it has (``feedrank train
--from-kafka`` after ``feedrank replay``, or ``--file``). The simulated apps have no
logs, so they make some: uniformly logged traffic over the world that ends (about a
fifth of the span early) before the world starts, where serving takes over. Each later
round is logged by the model trained on the rounds before (epsilon-greedy), as a feed's
logs are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from feedrank.core.settings import Settings
from feedrank.learners.bootstrap import catalogue_posts
from feedrank.learners.examples import batch_from_examples, concat
from feedrank.learners.post_topics import TopicLookup
from feedrank.learners.posts import PostCatalogue
from feedrank.learners.training_run import TrainingRun
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world import World

HISTORY_SLACK = 1.25  # decisions with an empty pool pass time without examples
SIMULATED_SOURCE = "simulated"


@dataclass
class SimulatedHistory:
    """The simulator that logs the history, and how many examples a round holds."""

    simulator: ExampleSimulator
    topics: TopicLookup
    examples_per_round: int

    def first_run(self) -> TrainingRun:
        examples = self.simulator.examples(self.examples_per_round)
        batch = batch_from_examples(examples, topics=self.topics)
        return TrainingRun(batch, SIMULATED_SOURCE)

    def next_round(self, run: TrainingRun, seed: int) -> TrainingRun:
        """More simulated traffic, logged by ``run``'s model (epsilon-greedy), added on."""
        if run.trainer is None:
            raise ValueError("only a trained run has a next round")
        simulator = self.simulator
        simulator.scorer = run.trainer.model.score_candidates
        simulator.model_version = f"train-round-{seed}"
        examples = simulator.examples(self.examples_per_round)
        more = batch_from_examples(examples, topics=self.topics)
        return replace(run, batch=concat([run.batch, more]), trainer=None, report=None)

    def for_publishing(self, run: TrainingRun) -> TrainingRun:
        """``run`` with the whole simulated catalogue to embed and index beside it."""
        return replace(run, catalogue=self.world_catalogue())

    def world_catalogue(self) -> PostCatalogue:
        """The whole simulated catalogue as of the history's "now", with the counts the
        history gathered, to embed and index. Creation times are the world's: a post
        published after "now" has age 0 there, and must not enter the index as created
        "now" (it would be served early)."""
        store = self.simulator.store
        return catalogue_posts(store.catalogue, self.simulator.now_ms, store=store)


def simulated_history(
    settings: Settings,
    world: World,
    topics: TopicLookup,
    *,
    examples_per_round: int,
    seed: int,
    rounds: int = 1,
) -> SimulatedHistory:
    """History with room for ``rounds`` rounds of ``examples_per_round`` examples, so the
    last round too ends before the world starts."""
    config = SimulationConfig(
        seed=seed,
        reward_window_ms=int(settings.time.reward_window.total_seconds() * 1000),
        decision_interval_ms=int(settings.learner.history_decision_interval_s * 1000),
    )
    span_ms = history_span_ms(config, examples_per_round * rounds)
    simulator = ExampleSimulator(world, config, start_ms=world.config.start_ms - span_ms)
    return SimulatedHistory(simulator, topics, examples_per_round)


def history_span_ms(config: SimulationConfig, examples: int) -> int:
    """Event time that ``examples`` simulated examples take, with room for the decisions
    that show no slate."""
    decisions = -(-examples // config.slate_size)
    return int(decisions * config.decision_interval_ms * HISTORY_SLACK)
