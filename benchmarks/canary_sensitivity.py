"""Canary sensitivity: how often does a rollout catch a worse version, and how soon?

    .venv/bin/python benchmarks/canary_sensitivity.py [--trials 100] [--json]

Each trial rolls a candidate out against a stable version with the REAL deploy code:
:class:`DeployControl` with its state file, the :class:`RolloutController` (steps,
pause, settle) and the :class:`CanaryAnalysis` (always-valid confidence sequences),
fed 5-minute ``EngagementAggregate`` records through the :class:`AggregateBook`, as the
Flink job writes them. Only the traffic is simulated, from a simulated world's users:

* each user's share of the traffic follows their ``sessions_per_day`` and their
  engagement probability their hidden ``user_bias`` (a logit offset), scaled so the
  mean is ``--engagement-rate``; impressions per user and window are Poisson, engaged
  ones binomial, so users differ as they do in the simulator (the variance between users
  is in the data, not only the coin flips);
* users are split by the explore service's own salted hash (:func:`user_position`), a
  fresh salt per trial; the canary's engagement probability is ``1 - drop`` times the
  user's; reports, blocks and hides are the same on both arms;
* every engagement is prompt (within the settle time), so the settle time costs its
  time and nothing else.

Per candidate drop (0 %, 2 %, 5 %, 10 %) and rule, over ``--trials`` trials: the share
rolled back, at which step, and the simulated time to the rollback; the share promoted;
the share undecided after ``--max-hours``. Rules: today's ("advance when nothing is
significantly worse", ``deploy.advance_margin = 0``) and a non-inferiority step
(``advance_margin``: hold until shown within the margin of stable). The targets
(issue 21): a 5 % drop rolled back within the first two steps in >= 90 % of trials, an
equal version rolled back in <= 5 %.

Variance reduction: CUPED would regress each user's in-rollout engagement rate on their
pre-period rate. The benchmark measures, on the same users, how much variance that
removes (``cuped_variance_reduction``: 1 - rho^2 at the user level, impressions as
weights), which is what CUPED could buy before any change to the aggregates.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.progress import progress
from feedrank.core.arms import user_position
from feedrank.core.clock import ManualClock
from feedrank.core.feature_schema import user_id
from feedrank.deploy.aggregates import AggregateBook
from feedrank.deploy.analysis import AnalysisConfig, ArmTotals, CanaryAnalysis
from feedrank.deploy.control import ControlConfig, DeployControl
from feedrank.deploy.controller import RolloutController
from feedrank.deploy.state import Phase, Rollout
from feedrank.deploy.store import StateFile
from feedrank.registry import LocalModelRegistry
from feedrank.simulate.world.config import WorldConfig
from feedrank.simulate.world.generator import generate_world
from feedrank.v1 import events_pb2
from tests.support.deploy import WINDOW_MS, prompt_aggregate, publish_versions

F64 = npt.NDArray[np.float64]
START_MS = 1_764_000_000_000
SAFEGUARD_RATES = (0.002, 0.0006, 0.003)  # reports, blocks, hides per impression
DROPS = (0.0, 0.02, 0.05, 0.10)


@dataclass(frozen=True)
class Scenario:
    users: int = 20_000
    impressions_per_s: float = 1_000.0  # the whole app's traffic, both arms
    engagement_rate: float = 0.13  # prompt engagements per impression on stable
    trials: int = 100
    max_hours: float = 24.0
    steps: str = "0.01,0.05,0.25,0.5,1.0"  # deploy.steps
    step_pause_s: float = 300.0
    settle_s: float = 900.0
    min_impressions: int = 5_000
    alpha: float = 0.05
    mixture_effect: float = 0.25
    advance_margin: float = 0.03  # the non-inferiority rule's margin
    pre_hours: float = 24.0  # pre-period of the corrected rule (before the rollout)
    seed: int = 0

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(float(step) for step in self.steps.split(","))


@dataclass(frozen=True)
class Population:
    traffic_share: F64  # each user's share of the impressions
    engagement: F64  # each user's engagement probability on stable

    @classmethod
    def of_world(cls, scenario: Scenario) -> Population:
        world = generate_world(
            WorldConfig(num_users=scenario.users, num_creators=50, num_posts=500, seed=7)
        )
        sessions = world.users.sessions_per_day.astype(np.float64)
        bias = world.hidden.user_bias.astype(np.float64)
        share = sessions / sessions.sum()
        offset = _solve_offset(bias, share, scenario.engagement_rate)
        return cls(share, 1.0 / (1.0 + np.exp(-(offset + bias))))


def _solve_offset(bias: F64, share: F64, mean: float) -> float:
    """The logit offset that makes the traffic-weighted engagement rate ``mean``."""
    low, high = -10.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        rate = float((share / (1.0 + np.exp(-(middle + bias)))).sum())
        low, high = (middle, high) if rate < mean else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Rule:
    name: str
    advance_margin: float
    corrected: bool  # the same users' pre-period difference taken off


class SimulatedPrePeriod:
    """The users' totals over ``pre_hours`` before the rollout, all on stable."""

    def __init__(
        self,
        rng: np.random.Generator,
        expected: F64,
        engagement: F64,
        positions: F64,
    ) -> None:
        self.positions = positions
        self.impressions = rng.poisson(expected)
        self.counts = [rng.binomial(self.impressions, engagement)] + [
            rng.binomial(self.impressions, rate) for rate in SAFEGUARD_RATES
        ]

    def before(
        self, rollout: Rollout, canary_weight: float, until_ms: int
    ) -> tuple[ArmTotals, ArmTotals]:
        on_canary = self.positions < canary_weight
        return self._totals(on_canary), self._totals(~on_canary)

    def _totals(self, mask: npt.NDArray[np.bool_]) -> ArmTotals:
        engaged, reports, blocks, hides = (int(count[mask].sum()) for count in self.counts)
        return ArmTotals(int(self.impressions[mask].sum()), engaged, reports, blocks, hides)


@dataclass(frozen=True)
class TrialOutcome:
    outcome: str  # "rolled_back", "promoted" or "undecided"
    step: int  # 0-based index of the step that rolled back (-1 otherwise)
    hours: float  # simulated time to the outcome


def run_trial(
    scenario: Scenario, population: Population, drop: float, rule: Rule, trial: int
) -> TrialOutcome:
    """One rollout of a candidate ``drop`` worse, judged by ``rule``."""
    rng = np.random.default_rng([scenario.seed, trial, int(drop * 1000)])  # same for each rule
    salt = f"trial-{trial}"
    positions = np.array([user_position(salt, user_id(row)) for row in range(scenario.users)])
    per_s = population.traffic_share * scenario.impressions_per_s
    per_window = per_s * WINDOW_MS / 1000
    pre_period = SimulatedPrePeriod(
        rng, per_s * scenario.pre_hours * 3600, population.engagement, positions
    )
    with tempfile.TemporaryDirectory() as directory:
        clock = ManualClock(START_MS)
        registry = LocalModelRegistry(Path(directory) / "registry", clock=clock)
        stable, candidate = publish_versions(registry, 2)
        control = DeployControl(
            registry,
            StateFile(Path(directory) / "rollout.json"),
            clock,
            ControlConfig(default_steps=scenario.weights, salt=salt),
        )
        control.start(stable)
        control.start(candidate)
        book = AggregateBook()
        analysis = AnalysisConfig(
            min_impressions=scenario.min_impressions,
            alpha=scenario.alpha,
            mixture_effect=scenario.mixture_effect,
            advance_margin=rule.advance_margin,
        )
        controller = RolloutController(
            control,
            book,
            CanaryAnalysis(analysis),
            clock,
            step_pause_ms=int(scenario.step_pause_s * 1000),
            settle_ms=int(scenario.settle_s * 1000),
            pre_period=pre_period if rule.corrected else None,
        )
        windows = int(scenario.max_hours * 3600 * 1000 / WINDOW_MS)
        for _ in range(windows):
            rollout = control.rollout()
            if not rollout.active:
                break
            step = rollout.current_step
            on_canary = positions < rollout.canary_weight
            start = clock.now_ms()
            clock.advance(WINDOW_MS)
            impressions = rng.poisson(per_window)
            probability = population.engagement * np.where(on_canary, 1.0 - drop, 1.0)
            engaged = rng.binomial(impressions, probability)
            for version, arm, mask in (
                (candidate, "canary", on_canary),
                (stable, "stable", ~on_canary),
            ):
                book.add(_aggregate(rng, version, arm, start, impressions[mask], engaged[mask]))
            controller.tick()
            rollout = control.rollout()
            hours = (clock.now_ms() - START_MS) / 3_600_000
            if rollout.phase is Phase.ROLLED_BACK:
                return TrialOutcome("rolled_back", step, hours)
            if rollout.phase is Phase.PROMOTED:
                return TrialOutcome("promoted", -1, hours)
        return TrialOutcome("undecided", -1, scenario.max_hours)


def _aggregate(
    rng: np.random.Generator,
    version: str,
    arm: str,
    window_start_ms: int,
    impressions: npt.NDArray[np.int64],
    engaged: npt.NDArray[np.int64],
) -> events_pb2.EngagementAggregate:
    shown = int(impressions.sum())
    reports, blocks, hides = (int(rng.binomial(shown, rate)) for rate in SAFEGUARD_RATES)
    return prompt_aggregate(
        version=version,
        arm=arm,
        window_start_ms=window_start_ms,
        impressions=shown,
        counts=(int(engaged.sum()), reports, blocks, hides),
    )


def cuped_variance_reduction(scenario: Scenario, population: Population, hours: float) -> float:
    """Share of the user-level variance of the engagement rate that a pre-period of the
    same length explains (rho^2), impressions as weights: CUPED's gain on these users."""
    rng = np.random.default_rng(scenario.seed)
    expected = population.traffic_share * scenario.impressions_per_s * hours * 3600
    before, during = rng.poisson(expected), rng.poisson(expected)
    both = (before > 0) & (during > 0)
    x = rng.binomial(before[both], population.engagement[both]) / before[both]
    y = rng.binomial(during[both], population.engagement[both]) / during[both]
    weights = during[both].astype(np.float64)
    x_mean, y_mean = np.average(x, weights=weights), np.average(y, weights=weights)
    covariance = np.average((x - x_mean) * (y - y_mean), weights=weights)
    x_variance = np.average((x - x_mean) ** 2, weights=weights)
    y_variance = np.average((y - y_mean) ** 2, weights=weights)
    return float(covariance**2 / (x_variance * y_variance))


@dataclass(frozen=True)
class Cell:
    rule: str
    advance_margin: float
    corrected: bool
    drop: float
    trials: int
    rolled_back: float  # share of trials
    rolled_back_by_step_2: float
    promoted: float
    undecided: float
    by_step: list[float]  # share rolled back at each step
    median_hours_to_rollback: float
    median_hours_to_promotion: float


def _cell(rule: Rule, drop: float, outcomes: list[TrialOutcome], steps: int) -> Cell:
    count = len(outcomes)

    def share(predicate: Callable[[TrialOutcome], bool]) -> float:
        return sum(1 for o in outcomes if predicate(o)) / count

    def median_hours(kind: str) -> float:
        hours = [o.hours for o in outcomes if o.outcome == kind]
        return float(np.median(hours)) if hours else math.nan

    return Cell(
        rule=rule.name,
        advance_margin=rule.advance_margin,
        corrected=rule.corrected,
        drop=drop,
        trials=count,
        rolled_back=share(lambda o: o.outcome == "rolled_back"),
        rolled_back_by_step_2=share(lambda o: o.outcome == "rolled_back" and o.step <= 1),
        promoted=share(lambda o: o.outcome == "promoted"),
        undecided=share(lambda o: o.outcome == "undecided"),
        by_step=[
            sum(1 for o in outcomes if o.outcome == "rolled_back" and o.step == step) / count
            for step in range(steps)
        ],
        median_hours_to_rollback=median_hours("rolled_back"),
        median_hours_to_promotion=median_hours("promoted"),
    )


@functools.cache
def _population(scenario: Scenario) -> Population:
    return Population.of_world(scenario)  # once per worker process


def _trial_job(job: tuple[Scenario, float, Rule, int]) -> TrialOutcome:
    scenario, drop, rule, trial = job
    return run_trial(scenario, _population(scenario), drop, rule, trial)


def rules_of(scenario: Scenario) -> list[Rule]:
    """Today's rule; with a margin, non-inferiority steps, raw and pre-period corrected."""
    rules = [Rule("advance when nothing is significantly worse (today)", 0.0, False)]
    rules.append(Rule("the same, pre-period difference taken off", 0.0, True))
    if scenario.advance_margin > 0:
        margin = scenario.advance_margin
        rules.append(Rule(f"non-inferiority, margin {margin:.0%}", margin, False))
        rules.append(Rule(f"non-inferiority {margin:.0%}, pre-period taken off", margin, True))
    return rules


def parse_arguments() -> tuple[Scenario, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for item in fields(Scenario):
        default = getattr(Scenario(), item.name)
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--json", action="store_true", help="print a JSON report as well")
    arguments = vars(parser.parse_args())
    as_json = bool(arguments.pop("json"))
    return Scenario(**arguments), as_json


def main() -> None:
    say = progress("canary_sensitivity")
    scenario, as_json = parse_arguments()
    started = time.perf_counter()
    population = Population.of_world(scenario)
    cells: list[Cell] = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for rule in rules_of(scenario):
            for drop in DROPS:
                jobs = [(scenario, drop, rule, trial) for trial in range(scenario.trials)]
                outcomes = list(pool.map(_trial_job, jobs, chunksize=4))
                cells.append(_cell(rule, drop, outcomes, len(scenario.weights)))
                say(f"{rule.name}: drop {drop:.0%}: {cells[-1].rolled_back:.0%} rolled back")
    reduction = cuped_variance_reduction(scenario, population, hours=1.0)
    print_report(scenario, cells, reduction)
    say(f"done in {time.perf_counter() - started:.0f} s")
    if as_json:
        report = {
            "scenario": asdict(scenario),
            "cells": [asdict(cell) for cell in cells],
            "cuped_variance_reduction": reduction,
            "seconds": time.perf_counter() - started,
        }
        print(json.dumps(report))


def print_report(scenario: Scenario, cells: list[Cell], reduction: float) -> None:
    print(
        f"canary sensitivity: {scenario.trials} trials per cell, {scenario.users:,} users, "
        f"{scenario.impressions_per_s:,.0f} impressions/s, engagement "
        f"{scenario.engagement_rate:.2f}, steps {scenario.steps}, pause "
        f"{scenario.step_pause_s:.0f} s, settle {scenario.settle_s:.0f} s"
    )
    steps = "  ".join(f"@{weight:.0%}" for weight in scenario.weights)
    print(
        f"{'rule':<55} {'drop':>5} {'rolled back':>11} {'by step 2':>9} "
        f"{'promoted':>8} {'undecided':>9} {'h to rollback':>13} {'h to promote':>12}"
        f"  at step: {steps}"
    )
    for cell in cells:
        by_step = "  ".join(f"{share:>4.0%}" for share in cell.by_step)
        print(
            f"{cell.rule:<55} {cell.drop:>5.0%} {cell.rolled_back:>11.0%} "
            f"{cell.rolled_back_by_step_2:>9.0%} {cell.promoted:>8.0%} {cell.undecided:>9.0%} "
            f"{cell.median_hours_to_rollback:>13.2f} {cell.median_hours_to_promotion:>12.2f}"
            f"  {by_step}"
        )
    print(
        f"CUPED on a 1-hour pre-period would remove {reduction:.1%} of the user-level "
        "variance of the engagement rate"
    )


if __name__ == "__main__":
    main()
