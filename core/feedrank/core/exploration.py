"""Exploration policies: choose the shown slate and log an exact propensity per item.

Every policy takes the post-processed list (best first, as the rules left it), its
scores and a per-decision seed, and returns the positions it shows with, for each
position ``j``, the **conditional propensity**

    p_j = P(logging policy puts item a_j at position j | the list, a_0 .. a_{j-1})

so ``prod(p_j)`` is the probability of the whole slate. The same list, limit and seed
always give the same slate and propensities (``numpy.random.default_rng(seed)``), and
``next_position_probabilities`` gives the full distribution behind any ``p_j``, for
audits and for evaluating a target policy on a logged slate. Definitions and their
consequences for off-policy evaluation: ``docs/exploration.md``.

Both stochastic policies draw from an exploration pool: the first ``max(pool_size,
limit)`` items of the list, so the rules' choice of the top of the list is respected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import IntArray
from feedrank.v1 import events_pb2

ScoreArray = npt.NDArray[np.floating[Any]]
ProbabilityArray = npt.NDArray[np.float64]
PolicyKind: TypeAlias = events_pb2.ExplorationPolicy.ValueType

SCORE_FLOOR = 1e-12
"""Plackett-Luce clips scores to this before taking logs, so every logit is finite."""


@dataclass(frozen=True)
class Slate:
    """The shown items and their logged propensities, position by position."""

    rows: IntArray  # positions into the given ordered list, in shown order
    propensities: ProbabilityArray  # conditional on earlier positions, in (0, 1]

    @property
    def slate_probability(self) -> float:
        """Probability of the whole ordered slate: the product of the propensities."""
        return float(np.prod(self.propensities))


class ExplorationPolicy(Protocol):
    """How a logging policy chooses the shown slate from the post-processed list."""

    @property
    def kind(self) -> PolicyKind:
        """The ``events_pb2.ExplorationPolicy`` value logged with each decision."""
        ...

    def choose(self, scores: ScoreArray, limit: int, seed: int) -> Slate:
        """Show up to ``limit`` items of the list (``scores``, best first)."""
        ...

    def next_position_probabilities(
        self, scores: ScoreArray, placed: IntArray, limit: int
    ) -> ProbabilityArray:
        """P(item at the next position | ``placed`` took the earlier ones), per list item."""
        ...

    def pool(self, count: int, limit: int) -> int:
        """How many items of a ``count``-item list the policy may show (the first ones):
        its exploration pool, the support of every propensity it logs."""
        ...


@dataclass(frozen=True)
class Greedy:
    """Show the top ``limit`` items; every propensity is 1."""

    kind: ClassVar[PolicyKind] = events_pb2.EXPLORATION_POLICY_GREEDY

    def choose(self, scores: ScoreArray, limit: int, seed: int) -> Slate:
        """The first ``limit`` items; ``seed`` is unused."""
        shown = _slate_size(scores, limit)
        return Slate(np.arange(shown, dtype=np.int64), np.ones(shown, dtype=np.float64))

    def next_position_probabilities(
        self, scores: ScoreArray, placed: IntArray, limit: int
    ) -> ProbabilityArray:
        """1 for the best item not yet placed."""
        probabilities = np.zeros(len(scores), dtype=np.float64)
        remaining = _remaining(len(scores), placed)
        if remaining.size:
            probabilities[remaining[0]] = 1.0
        return probabilities

    def pool(self, count: int, limit: int) -> int:
        """The shown items: nothing else could be shown."""
        return min(count, max(limit, 0))


@dataclass(frozen=True)
class EpsilonGreedy:
    """Slot exploration: per slot, the best remaining item with probability 1 - ε,
    otherwise a uniformly random remaining item of the pool.

    Propensity at slot j: ``(1 - ε)·[a_j is the best remaining] + ε / |pool remaining|``.
    """

    epsilon: float
    pool_size: int = 50
    kind: ClassVar[PolicyKind] = events_pb2.EXPLORATION_POLICY_EPSILON_GREEDY

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")

    def choose(self, scores: ScoreArray, limit: int, seed: int) -> Slate:
        """Fill each slot by an ε-coin and, on explore, a uniform pick of the pool."""
        shown = _slate_size(scores, limit)
        pool = _pool_size(len(scores), self.pool_size, limit)
        rng = np.random.default_rng(seed)
        lefts = np.arange(pool, pool - shown, -1, dtype=np.int64)  # pool items left per slot
        explores = rng.random(shown) < self.epsilon
        picks = rng.integers(0, lefts) if shown else lefts
        remaining = list(range(pool))
        rows = np.empty(shown, dtype=np.int64)
        propensities = np.empty(shown, dtype=np.float64)
        for slot in range(shown):
            left = int(lefts[slot])
            index = int(picks[slot]) if explores[slot] else 0
            rows[slot] = remaining.pop(index)
            propensities[slot] = self._propensity(is_best=index == 0, left=left)
        return Slate(rows, propensities)

    def next_position_probabilities(
        self, scores: ScoreArray, placed: IntArray, limit: int
    ) -> ProbabilityArray:
        """ε / |pool remaining| for each remaining pool item, plus 1 - ε on the best."""
        probabilities = np.zeros(len(scores), dtype=np.float64)
        remaining = _remaining(_pool_size(len(scores), self.pool_size, limit), placed)
        if remaining.size:
            probabilities[remaining] = self.epsilon / remaining.size
            probabilities[remaining[0]] = self._propensity(is_best=True, left=remaining.size)
        return probabilities

    def pool(self, count: int, limit: int) -> int:
        return _pool_size(count, self.pool_size, limit)

    def _propensity(self, *, is_best: bool, left: int) -> float:
        exploit = (1.0 - self.epsilon) if is_best else 0.0
        return min(exploit + self.epsilon / left, 1.0)


@dataclass(frozen=True)
class PlackettLuce:
    """Softmax sampling without replacement over ``log(score) / temperature``.

    Sampled with Gumbel-top-k (exactly Plackett-Luce); the propensity at position j is
    the softmax probability of ``a_j`` among the pool items not placed before j:
    ``exp(l_{a_j} - logsumexp(l_remaining))`` with ``l = log(max(score, SCORE_FLOOR)) / T``
    (``l = score / T`` with ``log_scores=False``).
    """

    temperature: float = 1.0
    pool_size: int = 50
    log_scores: bool = True
    kind: ClassVar[PolicyKind] = events_pb2.EXPLORATION_POLICY_PLACKETT_LUCE

    def __post_init__(self) -> None:
        if not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")

    def logits(self, scores: ScoreArray) -> ProbabilityArray:
        """The (finite) logits of the list items; ValueError when they cannot be."""
        values = np.asarray(scores, dtype=np.float64)
        if self.log_scores:
            values = np.log(np.maximum(values, SCORE_FLOOR))
        with np.errstate(over="ignore"):
            logits = values / self.temperature
        if not np.all(np.isfinite(logits)):
            raise ValueError("scores give non-finite logits (NaN/inf score or tiny temperature)")
        return logits

    def choose(self, scores: ScoreArray, limit: int, seed: int) -> Slate:
        """Gumbel-top-k over the pool; propensities via a reverse log-sum-exp."""
        shown = _slate_size(scores, limit)
        pool = _pool_size(len(scores), self.pool_size, limit)
        logits = self.logits(scores[:pool])
        keys = logits + np.random.default_rng(seed).gumbel(size=pool)
        ranked = np.argsort(-keys, kind="stable")
        rows = ranked[:shown].astype(np.int64)
        return Slate(rows, _sequential_softmax(logits[rows], logits[ranked[shown:]]))

    def next_position_probabilities(
        self, scores: ScoreArray, placed: IntArray, limit: int
    ) -> ProbabilityArray:
        """Softmax of the logits over the remaining pool items."""
        probabilities = np.zeros(len(scores), dtype=np.float64)
        pool = _pool_size(len(scores), self.pool_size, limit)
        remaining = _remaining(pool, placed)
        if remaining.size:
            logits = self.logits(scores[remaining])
            probabilities[remaining] = np.exp(logits - np.logaddexp.reduce(logits))
        return probabilities

    def pool(self, count: int, limit: int) -> int:
        return _pool_size(count, self.pool_size, limit)


def _sequential_softmax(chosen: ProbabilityArray, unchosen: ProbabilityArray) -> ProbabilityArray:
    """``exp(chosen[j] - logsumexp(chosen[j:] + unchosen))`` for every j, without
    subtracting weights (stable however peaked the softmax is)."""
    if chosen.size == 0:
        return np.empty(0, dtype=np.float64)
    tail = np.logaddexp.accumulate(chosen[::-1])[::-1]
    rest = np.logaddexp.reduce(unchosen) if unchosen.size else -np.inf
    log_propensities = chosen - np.logaddexp(tail, rest)
    propensities: ProbabilityArray = np.minimum(np.exp(log_propensities), 1.0)
    return propensities


def _slate_size(scores: ScoreArray, limit: int) -> int:
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return min(limit, int(scores.shape[0]))


def _pool_size(count: int, pool_size: int, limit: int) -> int:
    """The pool is the first ``max(pool_size, limit)`` items, so a slate always fills."""
    return min(count, max(pool_size, limit))


def _remaining(pool: int, placed: IntArray) -> IntArray:
    """Pool positions not yet placed, best first."""
    free = np.ones(pool, dtype=np.bool_)
    placed = np.asarray(placed, dtype=np.int64)
    free[placed[placed < pool]] = False
    return np.flatnonzero(free)


@dataclass(frozen=True)
class ExplorationSettings:
    """A settings-level description of the logging policy of an arm."""

    policy: str = "greedy"
    """``greedy``, ``epsilon_greedy`` or ``plackett_luce``."""
    epsilon: float = 0.1
    """ε of ``epsilon_greedy``."""
    temperature: float = 1.0
    """Softmax temperature of ``plackett_luce`` (→ 0: greedy)."""
    pool_size: int = 50
    """Exploration pool: the first ``max(pool_size, limit)`` items of the list."""


def policy_from_settings(settings: ExplorationSettings) -> ExplorationPolicy:
    """The policy a settings description names."""
    if settings.policy == "greedy":
        return Greedy()
    if settings.policy == "epsilon_greedy":
        return EpsilonGreedy(epsilon=settings.epsilon, pool_size=settings.pool_size)
    if settings.policy == "plackett_luce":
        return PlackettLuce(temperature=settings.temperature, pool_size=settings.pool_size)
    raise ValueError(
        f"unknown exploration policy {settings.policy!r}; "
        "known: greedy, epsilon_greedy, plackett_luce"
    )


def policy_from_name(
    name: str,
    *,
    epsilon: float = 0.1,
    temperature: float = 1.0,
    pool_size: int = 50,
) -> ExplorationPolicy:
    """Shorthand, e.g. ``policy_from_name("epsilon_greedy", epsilon=0.1)``."""
    return policy_from_settings(
        ExplorationSettings(
            policy=name, epsilon=epsilon, temperature=temperature, pool_size=pool_size
        )
    )


def seed_for_decision(decision_id: str) -> int:
    """A uint64 exploration seed derived from the decision id (stable across processes)."""
    digest = hashlib.blake2b(decision_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
