from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from feedrank.core.exploration import (
    EpsilonGreedy,
    ExplorationPolicy,
    ExplorationSettings,
    Greedy,
    PlackettLuce,
    ScoreArray,
    Slate,
    policy_from_name,
    policy_from_settings,
    seed_for_decision,
)
from feedrank.v1 import events_pb2

SIX = np.array([0.9, 0.6, 0.5, 0.3, 0.2, 0.1], dtype=np.float32)
NO_PLACED = np.empty(0, dtype=np.int64)
DRAWS = 20_000

STOCHASTIC: list[ExplorationPolicy] = [
    EpsilonGreedy(epsilon=0.4),
    PlackettLuce(temperature=0.5),
]
ALL_POLICIES: list[ExplorationPolicy] = [Greedy(), *STOCHASTIC]


def policy_id(policy: ExplorationPolicy) -> str:
    return type(policy).__name__


def assert_close_to_frequency(propensity: float, hits: int, trials: int) -> None:
    """The observed frequency is within five standard errors of the propensity."""
    tolerance = 5.0 * math.sqrt(propensity * (1.0 - propensity) / trials) + 1e-3
    assert abs(hits / trials - propensity) <= tolerance, (propensity, hits, trials)


def draw(policy: ExplorationPolicy, scores: ScoreArray, limit: int) -> list[Slate]:
    return [policy.choose(scores, limit, seed) for seed in range(DRAWS)]


@pytest.mark.parametrize("policy", STOCHASTIC, ids=policy_id)
def test_the_seed_reproduces_the_slate(policy: ExplorationPolicy) -> None:
    first = policy.choose(SIX, 3, seed=2024)
    again = policy.choose(SIX, 3, seed=2024)
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.propensities, again.propensities)
    slates = {tuple(policy.choose(SIX, 3, seed).rows.tolist()) for seed in range(50)}
    assert len(slates) > 1


def test_epsilon_zero_is_greedy_with_propensity_one() -> None:
    scores = np.random.default_rng(0).random(30).astype(np.float32)
    for seed in range(20):
        slate = EpsilonGreedy(epsilon=0.0).choose(scores, 10, seed)
        assert slate.rows.tolist() == Greedy().choose(scores, 10, seed).rows.tolist()
        assert slate.rows.tolist() == list(range(10))
        assert slate.propensities.tolist() == [1.0] * 10
        assert slate.slate_probability == 1.0


@pytest.mark.parametrize("policy", STOCHASTIC, ids=policy_id)
def test_position_zero_frequencies_match_the_propensities(policy: ExplorationPolicy) -> None:
    slates = draw(policy, SIX, 3)
    logged: dict[int, float] = {}
    hits: dict[int, int] = defaultdict(int)
    for slate in slates:
        item = int(slate.rows[0])
        hits[item] += 1
        logged.setdefault(item, float(slate.propensities[0]))
        # The same item always logs the same propensity (up to float64 rounding).
        assert slate.propensities[0] == pytest.approx(logged[item], rel=1e-12)
    assert set(hits) == set(range(6))
    for item, propensity in logged.items():
        assert_close_to_frequency(propensity, hits[item], DRAWS)
    assert math.isclose(sum(logged.values()), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("policy", STOCHASTIC, ids=policy_id)
def test_later_positions_match_their_conditional_propensities(policy: ExplorationPolicy) -> None:
    slates = draw(policy, SIX, 3)
    checked = 0
    for position in (1, 2):
        groups: dict[tuple[int, ...], list[Slate]] = defaultdict(list)
        for slate in slates:
            groups[tuple(slate.rows[:position].tolist())].append(slate)
        for prefix, members in groups.items():
            if len(members) < 300:
                continue
            expected = policy.next_position_probabilities(SIX, np.array(prefix, dtype=np.int64), 3)
            counts = np.bincount([int(s.rows[position]) for s in members], minlength=6)
            for slate in members:
                item = int(slate.rows[position])
                assert slate.propensities[position] == pytest.approx(expected[item], rel=1e-9)
            for item in range(6):
                assert_close_to_frequency(float(expected[item]), int(counts[item]), len(members))
            checked += 1
    assert checked >= 10


def test_plackett_luce_propensities_are_the_sequential_softmax() -> None:
    scores = np.random.default_rng(5).random(40).astype(np.float32)
    policy = PlackettLuce(temperature=0.3, pool_size=40)
    slate = policy.choose(scores, 10, seed=9)
    logits = np.log(scores.astype(np.float64)) / 0.3
    remaining = list(range(40))
    for row, propensity in zip(slate.rows.tolist(), slate.propensities.tolist(), strict=True):
        weights = np.exp(logits[remaining] - logits[remaining].max())
        assert propensity == pytest.approx(weights[remaining.index(row)] / weights.sum(), rel=1e-9)
        remaining.remove(row)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=policy_id)
def test_first_position_probabilities_sum_to_one(policy: ExplorationPolicy) -> None:
    scores = np.random.default_rng(1).random(80).astype(np.float32)
    first = policy.next_position_probabilities(scores, NO_PLACED, 10)
    assert math.isclose(float(first.sum()), 1.0, rel_tol=1e-12)
    assert np.all(first >= 0.0)
    slate = policy.choose(scores, 10, seed=3)
    assert slate.propensities[0] == pytest.approx(first[slate.rows[0]], rel=1e-12)


@pytest.mark.parametrize(
    "policy",
    [
        *ALL_POLICIES,
        EpsilonGreedy(epsilon=1.0, pool_size=1000),
        PlackettLuce(temperature=0.01, pool_size=1000),
        PlackettLuce(temperature=50.0),
    ],
    ids=repr,
)
def test_propensities_are_in_the_unit_interval(policy: ExplorationPolicy) -> None:
    scores = np.random.default_rng(2).random(1000).astype(np.float32)
    scores[::7] = 0.0  # zero scores must not give zero or NaN propensities
    for seed in range(30):
        slate = policy.choose(scores, 50, seed)
        assert slate.rows.shape == slate.propensities.shape == (50,)
        assert len(set(slate.rows.tolist())) == 50
        assert np.all(slate.propensities > 0.0)
        assert np.all(slate.propensities <= 1.0)


def test_temperature_towards_zero_approaches_greedy() -> None:
    scores = np.linspace(0.9, 0.1, 30).astype(np.float32)
    for seed in range(20):
        slate = PlackettLuce(temperature=1e-3).choose(scores, 10, seed)
        assert slate.rows.tolist() == list(range(10))
        np.testing.assert_allclose(slate.propensities, 1.0)
    hot = PlackettLuce(temperature=1.0).next_position_probabilities(scores, NO_PLACED, 10)
    cold = PlackettLuce(temperature=0.05).next_position_probabilities(scores, NO_PLACED, 10)
    assert cold[0] > hot[0]


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=policy_id)
def test_short_lists_are_returned_whole(policy: ExplorationPolicy) -> None:
    slate = policy.choose(SIX[:2], 10, seed=1)
    assert sorted(slate.rows.tolist()) == [0, 1]
    assert policy.choose(SIX, 0, seed=1).rows.size == 0


def test_epsilon_greedy_explores_only_within_the_pool() -> None:
    scores = np.linspace(1.0, 0.01, 100).astype(np.float32)
    policy = EpsilonGreedy(epsilon=1.0, pool_size=8)
    shown = {int(row) for seed in range(200) for row in policy.choose(scores, 5, seed).rows}
    assert shown == set(range(8))
    slate = policy.choose(scores, 5, seed=0)
    np.testing.assert_allclose(slate.propensities, [1 / 8, 1 / 7, 1 / 6, 1 / 5, 1 / 4])


def test_factory_builds_the_named_policy() -> None:
    epsilon_greedy = policy_from_name("epsilon_greedy", epsilon=0.2, pool_size=7)
    assert epsilon_greedy == EpsilonGreedy(epsilon=0.2, pool_size=7)
    assert epsilon_greedy.kind == events_pb2.EXPLORATION_POLICY_EPSILON_GREEDY
    plackett_luce = policy_from_settings(ExplorationSettings("plackett_luce", temperature=0.5))
    assert plackett_luce.kind == events_pb2.EXPLORATION_POLICY_PLACKETT_LUCE
    assert policy_from_name("greedy").kind == events_pb2.EXPLORATION_POLICY_GREEDY
    with pytest.raises(ValueError, match="unknown exploration policy"):
        policy_from_name("thompson")
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(epsilon=1.5)
    with pytest.raises(ValueError, match="temperature"):
        PlackettLuce(temperature=0.0)


def test_non_finite_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        PlackettLuce().choose(np.array([0.5, np.nan], dtype=np.float32), 2, seed=0)


def test_decision_seed_is_stable_and_fits_uint64() -> None:
    seed = seed_for_decision("d-123")
    assert seed == seed_for_decision("d-123")
    assert seed != seed_for_decision("d-124")
    assert 0 <= seed < 2**64
    slate = PlackettLuce().choose(SIX, 3, seed)
    assert slate.slate_probability == pytest.approx(float(np.prod(slate.propensities)))
