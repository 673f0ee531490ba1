"""Is off-policy evaluation honest? Coverage of the 95% intervals on simulator logs.

    .venv/bin/python benchmarks/ope_coverage.py [--seeds 50] [--decisions 10000] [--json]

A logging policy (Plackett-Luce over an observable heuristic score, or ε-greedy) shows
``--slots`` of ``--candidates`` random posts to random users of a simulated world and
logs exact propensities; the world's BehaviourModel decides engagement (reward 1 when
the user likes, comments, shares or saves). A different target policy (Plackett-Luce
over another observable score) is evaluated from those logs with IPS, SNIPS and DR.
Its TRUE value is measured by running the target policy itself in the simulator over
``--truth-decisions`` fresh contexts (oracle engagement probabilities, averaged: no
coin-flip noise). Per seed, does each estimator's 95% interval cover the truth?

Baselines: the logging policy's own value used as an estimate of the target's (what
you would report without OPE), and IPS for error and interval width ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from feedrank.core.exploration import EpsilonGreedy, ExplorationPolicy, PlackettLuce
from feedrank.core.feature_schema import COUNTRIES, LANGUAGES
from feedrank.core.time_units import DAY_MS
from feedrank.learners.evaluation import (
    Estimate,
    LoggedBandit,
    SuppliedProbabilities,
    evaluate,
)
from feedrank.simulate.world.behaviour import BehaviourModel
from feedrank.simulate.world.config import WorldConfig
from feedrank.simulate.world.generator import World, generate_world

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ESTIMATORS = ("IPS", "SNIPS", "DR")


@dataclass(frozen=True)
class Scenario:
    users: int = 2_000
    creators: int = 300
    posts: int = 20_000
    candidates: int = 20
    slots: int = 3
    decisions: int = 10_000
    seeds: int = 50
    truth_decisions: int = 200_000
    logging: str = "plackett_luce"
    epsilon: float = 0.3
    logging_temperature: float = 1.0
    target_temperature: float = 1.0
    freshness_hours: float = 96.0
    workers: int = 2


@dataclass(frozen=True)
class Contexts:
    users: I64
    times_ms: I64
    candidates: I64  # (n, candidates) post rows


class Simulator:
    """Contexts, observable scores and policies over a simulated world."""

    def __init__(self, world: World, scenario: Scenario) -> None:
        self.world = world
        self.behaviour = BehaviourModel(world, seed=0)  # only its oracle probabilities are used
        self.scenario = scenario
        self.logging_policy: ExplorationPolicy = (
            PlackettLuce(scenario.logging_temperature, pool_size=scenario.candidates)
            if scenario.logging == "plackett_luce"
            else EpsilonGreedy(scenario.epsilon, pool_size=scenario.candidates)
        )
        self.target_policy = PlackettLuce(scenario.target_temperature, scenario.candidates)

    def contexts(self, rng: np.random.Generator, count: int) -> Contexts:
        """Random users, times and candidates; candidates listed best first by the logging
        score, as the rules hand them to the exploration policy."""
        start = self.world.config.start_ms
        users = rng.integers(0, self.world.num_users, count)
        candidates = rng.integers(0, self.world.num_posts, (count, self.scenario.candidates))
        world = self.world
        rate = world.creators.engagement_rate[world.posts.creator_index[candidates]]
        same = world.posts.language[candidates] == world.users.language[users][:, None]
        order = np.argsort(-(rate * np.where(same, 1.0, 0.2)), axis=1, kind="stable")
        return Contexts(
            users=users,
            times_ms=start + rng.integers(0, DAY_MS, count),
            candidates=np.take_along_axis(candidates, order, axis=1),
        )

    def logging_scores(self, contexts: Contexts, row: int) -> F64:
        """Observable heuristic: language match times the creator's historical rate."""
        posts = contexts.candidates[row]
        creators = self.world.posts.creator_index[posts]
        rate = self.world.creators.engagement_rate[creators].astype(np.float64)
        scores: F64 = self._language_match(contexts, row) * rate
        return scores

    def target_scores(self, contexts: Contexts, row: int) -> F64:
        """The logging score with a freshness boost (a new ranker to evaluate)."""
        posts = contexts.candidates[row]
        age_hours = (contexts.times_ms[row] - self.world.posts.created_ms[posts]) / 3.6e6
        freshness = np.exp(-age_hours / self.scenario.freshness_hours)
        scores: F64 = self.logging_scores(contexts, row) * freshness
        return scores

    def _language_match(self, contexts: Contexts, row: int) -> F64:
        user_language = self.world.users.language[contexts.users[row]]
        same = self.world.posts.language[contexts.candidates[row]] == user_language
        return np.where(same, 1.0, 0.2)

    def engagement(self, contexts: Contexts, row: int, shown: I64) -> F64:
        """ORACLE: the probability each shown post is engaged with at its position."""
        return self.behaviour.engagement_probability(
            int(contexts.users[row]),
            contexts.candidates[row][shown],
            np.arange(shown.shape[0]),
            int(contexts.times_ms[row]),
        ).astype(np.float64)


def simulate_logs(simulator: Simulator, seed: int) -> tuple[LoggedBandit, F64]:
    """Logged decisions of the logging policy and the target's probability of each row."""
    scenario = simulator.scenario
    rng = np.random.default_rng(seed)
    contexts = simulator.contexts(rng, scenario.decisions)
    slots = scenario.slots
    propensities = np.empty((scenario.decisions, slots))
    target = np.empty((scenario.decisions, slots))
    rewards = np.empty((scenario.decisions, slots))
    for row, exploration_seed in enumerate(rng.integers(0, 2**63, scenario.decisions).tolist()):
        slate = simulator.logging_policy.choose(
            simulator.logging_scores(contexts, row), slots, exploration_seed
        )
        propensities[row] = slate.propensities
        target_scores = simulator.target_scores(contexts, row)
        for slot in range(slots):
            target[row, slot] = simulator.target_policy.next_position_probabilities(
                target_scores, slate.rows[:slot], slots
            )[slate.rows[slot]]
        rewards[row] = rng.random(slots) < simulator.engagement(contexts, row, slate.rows)
    users = np.repeat(contexts.users, slots)
    world = simulator.world
    logs = LoggedBandit(
        decision_ids=tuple(str(d) for d in np.repeat(np.arange(scenario.decisions), slots)),
        decision_index=np.repeat(np.arange(scenario.decisions), slots),
        positions=np.tile(np.arange(slots), scenario.decisions),
        post_ids=("",) * (scenario.decisions * slots),
        user_ids=tuple(f"u{user}" for user in users.tolist()),
        propensities=propensities.ravel(),
        rewards=rewards.ravel(),
        lines=np.zeros(scenario.decisions * slots, dtype=np.int64),
        context_numeric={
            "activity": np.log1p(world.users.sessions_per_day[users].astype(np.float64)),
            "sensitive_filter": world.users.sensitive_filter[users].astype(np.float64),
        },
        context_categorical={
            "language": tuple(LANGUAGES[code] for code in world.users.language[users].tolist()),
            "country": tuple(COUNTRIES[code] for code in world.users.country[users].tolist()),
        },
    )
    return logs, target.ravel()


def true_total(simulator: Simulator, target: bool, seed: int, decisions: int) -> float:
    """ORACLE: a policy's expected engagement summed over ``decisions`` fresh contexts,
    by running the policy (the target's when ``target``, else the logging one)."""
    scenario = simulator.scenario
    policy = simulator.target_policy if target else simulator.logging_policy
    rng = np.random.default_rng(seed)
    contexts = simulator.contexts(rng, decisions)
    total = 0.0
    for row, exploration_seed in enumerate(rng.integers(0, 2**63, decisions).tolist()):
        scores = (
            simulator.target_scores(contexts, row)
            if target
            else simulator.logging_scores(contexts, row)
        )
        slate = policy.choose(scores, scenario.slots, exploration_seed)
        total += float(simulator.engagement(contexts, row, slate.rows).sum())
    return total


_SIMULATOR: Simulator | None = None  # set before the worker processes fork


def _simulator() -> Simulator:
    if _SIMULATOR is None:
        raise RuntimeError("the simulator is built before the workers start")
    return _SIMULATOR


def _truth_chunk(job: tuple[bool, int, int]) -> float:
    target, seed, decisions = job
    return true_total(_simulator(), target, seed, decisions)


@dataclass(frozen=True)
class SeedResult:
    estimates: dict[str, Estimate]
    simulate_s: float
    estimate_s: float


def _run_seed(seed: int) -> SeedResult:
    started = time.perf_counter()
    logs, target = simulate_logs(_simulator(), seed)
    simulated = time.perf_counter()
    report = evaluate(logs, SuppliedProbabilities(target), seed=seed)
    estimates = {estimate.estimator: estimate for estimate in report.estimates}
    estimates["logging"] = report.logging
    return SeedResult(estimates, simulated - started, time.perf_counter() - simulated)


def true_value(pool: ProcessPoolExecutor, scenario: Scenario, target: bool, seed: int) -> float:
    """ORACLE: a policy's expected engagement per slot over ``truth_decisions`` contexts."""
    chunks = max(scenario.workers, 1) * 4
    sizes = [scenario.truth_decisions // chunks] * chunks
    sizes[0] += scenario.truth_decisions - sum(sizes)
    jobs = [(target, seed * 1_000 + chunk, size) for chunk, size in enumerate(sizes)]
    return sum(pool.map(_truth_chunk, jobs)) / (scenario.truth_decisions * scenario.slots)


@dataclass(frozen=True)
class Summary:
    estimator: str
    coverage: float
    mean_bias: float
    rmse: float
    mean_ci_width: float
    mean_ess: float


def summarise(name: str, estimates: list[Estimate], truth: float) -> Summary:
    values = np.array([estimate.value for estimate in estimates])
    return Summary(
        estimator=name,
        coverage=float(np.mean([estimate.covers(truth) for estimate in estimates])),
        mean_bias=float(np.mean(values - truth)),
        rmse=float(np.sqrt(np.mean((values - truth) ** 2))),
        mean_ci_width=float(np.mean([e.ci_high - e.ci_low for e in estimates])),
        mean_ess=float(np.mean([estimate.ess for estimate in estimates])),
    )


def parse_arguments() -> tuple[Scenario, bool]:
    defaults = Scenario()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--json", action="store_true", help="print a JSON report as well")
    arguments = vars(parser.parse_args())
    as_json = bool(arguments.pop("json"))
    return Scenario(**arguments), as_json


def main() -> None:
    global _SIMULATOR  # noqa: PLW0603 (read by the forked workers)
    scenario, as_json = parse_arguments()
    started = time.perf_counter()
    world = generate_world(
        WorldConfig(
            num_users=scenario.users, num_creators=scenario.creators, num_posts=scenario.posts
        )
    )
    _SIMULATOR = Simulator(world, scenario)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max(scenario.workers, 1), mp_context=context) as pool:
        truth = true_value(pool, scenario, target=True, seed=10_001)
        logging_truth = true_value(pool, scenario, target=False, seed=10_002)
        truth_s = time.perf_counter() - started
        results = list(pool.map(_run_seed, range(scenario.seeds)))
    total_s = time.perf_counter() - started

    summaries = [
        summarise(name, [result.estimates[name] for result in results], truth)
        for name in ESTIMATORS
    ]
    naive = summarise(
        "logging value as estimate (baseline)",
        [result.estimates["logging"] for result in results],
        truth,
    )
    simulate_s = sum(result.simulate_s for result in results)
    estimate_s = sum(result.estimate_s for result in results)
    seconds = {"truth": truth_s, "simulate": simulate_s, "estimate": estimate_s, "total": total_s}
    print_report(scenario, truth, logging_truth, [*summaries, naive], seconds)
    if as_json:
        report = {
            "scenario": asdict(scenario),
            "true_target_value": truth,
            "true_logging_value": logging_truth,
            "summaries": [asdict(summary) for summary in [*summaries, naive]],
            "seconds": seconds,
        }
        print(json.dumps(report))


def print_report(
    scenario: Scenario,
    truth: float,
    logging_truth: float,
    summaries: list[Summary],
    seconds: dict[str, float],
) -> None:
    print(
        f"{scenario.seeds} seeds x {scenario.decisions:,} decisions x {scenario.slots} slots of "
        f"{scenario.candidates} candidates; logging {scenario.logging}, target Plackett-Luce "
        f"T={scenario.target_temperature}"
    )
    print(
        f"true value per slot: target {truth:.5f}, logging {logging_truth:.5f} "
        f"(ratio {truth / logging_truth:.3f}; {scenario.truth_decisions:,} simulated decisions "
        "each, oracle engagement probabilities)"
    )
    ips = summaries[0]
    print(
        f"{'estimator':<38} {'coverage':>8} {'bias':>9} {'RMSE':>8} {'xIPS':>6} "
        f"{'CI width':>9} {'xIPS':>6} {'ESS':>8}"
    )
    for summary in summaries:
        print(
            f"{summary.estimator:<38} {summary.coverage:>8.0%} {summary.mean_bias:>+9.5f} "
            f"{summary.rmse:>8.5f} {summary.rmse / ips.rmse:>6.2f} {summary.mean_ci_width:>9.5f} "
            f"{summary.mean_ci_width / ips.mean_ci_width:>6.2f} {summary.mean_ess:>8.0f}"
        )
    per_seed = seconds["estimate"] / max(scenario.seeds, 1)
    print(
        f"runtime: {seconds['total']:.1f} s wall with {scenario.workers} workers (truth "
        f"{seconds['truth']:.1f} s wall; CPU time: simulating logs {seconds['simulate']:.1f} s, "
        f"estimating {seconds['estimate']:.1f} s = {per_seed * 1000:.0f} ms per seed of "
        f"{scenario.decisions * scenario.slots:,} rows, "
        f"{scenario.decisions * scenario.slots / max(per_seed, 1e-9):,.0f} rows/s)"
    )
    if math.isnan(truth):
        raise SystemExit("the true value is NaN")


if __name__ == "__main__":
    main()
