"""Simulated users: how a shown feed turns into delayed engagement events.

This module reads the world's HIDDEN parameters (true interests, true quality). It is
the only reader besides evaluation code; every method that exposes a hidden quantity is
an ORACLE and says so. No learner or policy may call them except the oracle baseline.

For user ``u`` and the post ``j`` shown at 0-based position ``p`` at time ``t``:

* match ``m = cos(interests[u], topics[j])`` in [0, 1];
* relevance ``r = sigmoid(bias + user_bias[u] + w_m m + w_q quality[j]
  - language_penalty [lang differs] - sensitive_penalty [sensitive and user filters])``;
* freshness ``f = floor + (1 - floor) 2 ** (-age_hours / half_life)``;
* examination (position bias) ``e = (1 + p) ** -position_decay``.

The user examines the post with probability ``e`` (then a VIEW and a DWELL follow),
engages given examination with probability ``r f`` (one LIKE/COMMENT/SHARE/SAVE, sometimes
a second one), and otherwise gives negative feedback (HIDE/REPORT/BLOCK) with
probability ``n = base + bad_match * max(0, 1 - m / threshold) + sensitive [filtered] +
low_quality * max(0, -quality[j])`` (capped at 1). So the oracle engagement probability
is exactly ``e r f``. Views arrive seconds after the impression; engagements, reports
and blocks after a heavy-tailed lognormal delay (about 4% after 14 days with defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import FloatArray, IntArray, post_id, user_id
from feedrank.simulate.world.config import BehaviourConfig, normalised
from feedrank.simulate.world.generator import World
from feedrank.v1 import events_pb2

_MS_PER_HOUR = 3_600_000.0
_SQUARED_NORM_FLOOR = 1e-24  # guards the cosine against an all-zero topic row
_POSITIVE_TYPES = np.array(
    [
        events_pb2.REWARD_TYPE_LIKE,
        events_pb2.REWARD_TYPE_COMMENT,
        events_pb2.REWARD_TYPE_SHARE,
        events_pb2.REWARD_TYPE_SAVE,
    ],
    dtype=np.int64,
)
_NEGATIVE_TYPES = np.array(
    [events_pb2.REWARD_TYPE_HIDE, events_pb2.REWARD_TYPE_REPORT, events_pb2.REWARD_TYPE_BLOCK],
    dtype=np.int64,
)
_F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Assessment:
    """What a user thinks of some posts, before chance decides (all hidden-derived)."""

    match: _F64Array
    appeal: _F64Array  # relevance x freshness: P(engage | examined)
    negative: _F64Array  # P(negative feedback | examined, not engaged)


@dataclass
class _Events:
    """Reward events under construction, as parallel columns."""

    rows: list[IntArray]
    types: list[IntArray]
    values: list[_F64Array]
    delays_ms: list[IntArray]

    def add(self, rows: IntArray, types: IntArray, delays_ms: IntArray, values: _F64Array) -> None:
        self.rows.append(rows)
        self.types.append(types)
        self.delays_ms.append(delays_ms)
        self.values.append(values)


class BehaviourModel:
    """Simulated users of a :class:`World`; reads ``world.hidden`` (see module docstring)."""

    def __init__(self, world: World, seed: int = 0, config: BehaviourConfig | None = None) -> None:
        self.world = world
        self.config = config or BehaviourConfig()
        self.rng = np.random.default_rng(seed)  # used when respond() is given no rng
        topics = world.posts.topics
        self._topic_norms = np.sqrt(
            np.maximum(np.einsum("ij,ij->i", topics, topics), _SQUARED_NORM_FLOOR)
        )
        self._action_p = normalised(self.config.action_weights)
        self._negative_p = normalised(self.config.negative_weights)

    def engagement_probability(
        self, user_index: int, post_indices: IntArray, positions: IntArray, impression_ms: int
    ) -> FloatArray:
        """ORACLE (reads hidden parameters): P(like, comment, share or save) per post.

        ``positions`` are the 0-based feed positions the posts would be shown at.
        """
        positions = np.asarray(positions)
        if positions.shape != np.shape(post_indices):
            raise ValueError("positions must have one entry per post index")
        assessment = self._assess(user_index, np.asarray(post_indices), impression_ms)
        examine = self._examination(positions)
        return (examine * assessment.appeal).astype(np.float32)

    def expected_engaged_within(
        self, user_index: int, post_indices: IntArray, impression_ms: int, within_ms: int
    ) -> _F64Array:
        """ORACLE (reads hidden parameters): P(the post shown at position ``i`` of
        ``post_indices`` is engaged with (like, comment, share or save) no later than
        ``within_ms`` after the impression), per post.

        The expectation of what ``respond`` draws, counted as ``engaged_posts`` counts:
        ``e r f`` times the chance that the first engagement, or the second one some
        users add, arrives in time. A feed's expected engaged count has none of the
        sampling noise of one draw, so two policies shown to the same user at the same
        time compare closely (``feedrank.simulate.engagement``).
        """
        posts = np.asarray(post_indices, dtype=np.int64)
        appeal = self._assess(user_index, posts, impression_ms).appeal
        engaged = self._examination(np.arange(posts.shape[0])) * appeal
        in_time = self._delay_cdf(within_ms / 1000.0)
        distinct_second = self.config.second_action_prob * (
            1.0 - float(self._action_p @ self._action_p)
        )
        at_least_one = in_time + (1.0 - in_time) * distinct_second * in_time
        expected: _F64Array = engaged * at_least_one
        return expected

    def _delay_cdf(self, seconds: float) -> float:
        """P(an engagement delay <= ``seconds``) under ``_delays_ms``'s capped lognormal."""
        config = self.config
        if seconds >= config.max_delay_s:
            return 1.0
        if seconds <= 0.0:
            return 0.0
        if config.engagement_delay_sigma == 0.0:
            return 1.0 if seconds >= config.engagement_delay_median_s else 0.0
        z = math.log(seconds / config.engagement_delay_median_s) / config.engagement_delay_sigma
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    def oracle_top_k(
        self, user_index: int, candidate_post_indices: IntArray, k: int, impression_ms: int
    ) -> IntArray:
        """ORACLE (reads hidden parameters): the ``k`` candidates the user would engage
        with most, best first. Placing them in this order maximises expected engagement
        because examination only decreases with position."""
        candidates = np.asarray(candidate_post_indices, dtype=np.int64)
        appeal = self._assess(user_index, candidates, impression_ms).appeal
        order = np.argsort(-appeal, kind="stable")[: max(k, 0)]
        best_first: IntArray = candidates[order]
        return best_first

    def respond(
        self,
        user_index: int,
        shown_post_indices: IntArray,
        *,
        decision_id: str,
        impression_ms: int,
        rng: np.random.Generator | None = None,
    ) -> list[events_pb2.Reward]:
        """The rewards user ``user_index`` will produce for this feed, ordered by ``ts_ms``.

        Position ``p`` is the post's place in ``shown_post_indices``. Some rewards lie
        weeks after ``impression_ms``: the caller delivers each when its time comes.
        """
        if not decision_id:
            raise ValueError("decision_id must be non-empty")
        rng = self.rng if rng is None else rng
        posts = np.asarray(shown_post_indices, dtype=np.int64)
        assessment = self._assess(user_index, posts, impression_ms)
        draws = rng.random((3, posts.shape[0]))
        examined = draws[0] < self._examination(np.arange(posts.shape[0]))
        engaged = examined & (draws[1] < assessment.appeal)
        negative = examined & ~engaged & (draws[2] < assessment.negative)
        events = _Events([], [], [], [])
        self._views_and_dwell(events, np.flatnonzero(examined), assessment, rng)
        self._engagements(events, np.flatnonzero(engaged), rng)
        self._negatives(events, np.flatnonzero(negative), rng)
        return _rewards(events, posts, user_id(user_index), decision_id, impression_ms)

    def _assess(self, user_index: int, posts: IntArray, impression_ms: int) -> _Assessment:
        world, config = self.world, self.config
        self._check(user_index, posts)
        hidden, table = world.hidden, world.posts
        match = (table.topics[posts] @ hidden.user_interests[user_index]) / self._topic_norms[posts]
        quality = hidden.post_quality[posts].astype(np.float64)
        filtered = table.sensitive[posts] & world.users.sensitive_filter[user_index]
        foreign = table.language[posts] != world.users.language[user_index]
        logit = (
            config.relevance_bias
            + float(hidden.user_bias[user_index])
            + config.match_weight * match
            + config.quality_weight * quality
            - config.language_mismatch_penalty * foreign
            - config.sensitive_filtered_penalty * filtered
        )
        relevance = 1.0 / (1.0 + np.exp(-logit))
        age_hours = np.maximum(impression_ms - table.created_ms[posts], 0) / _MS_PER_HOUR
        floor = config.freshness_floor_share
        freshness = floor + (1.0 - floor) * np.exp2(-age_hours / config.freshness_half_life_hours)
        bad_match = np.maximum(0.0, 1.0 - match / config.bad_match_threshold)
        negative = (
            config.negative_base_prob
            + config.negative_bad_match_prob * bad_match
            + config.negative_sensitive_prob * filtered
            + config.negative_low_quality_prob * np.maximum(0.0, -quality)
        )
        return _Assessment(
            match=match.astype(np.float64),
            appeal=relevance * freshness,
            negative=np.minimum(negative, 1.0),
        )

    def _check(self, user_index: int, posts: IntArray) -> None:
        if not 0 <= user_index < self.world.num_users:
            raise IndexError(f"user index {user_index} outside 0..{self.world.num_users - 1}")
        if posts.size and (posts.min() < 0 or posts.max() >= self.world.num_posts):
            raise IndexError(f"post indices must lie in 0..{self.world.num_posts - 1}")

    def _examination(self, positions: IntArray) -> _F64Array:
        return np.power(1.0 + positions, -self.config.position_decay)

    def _views_and_dwell(
        self, events: _Events, rows: IntArray, assessment: _Assessment, rng: np.random.Generator
    ) -> None:
        config = self.config
        view_ms = _delays_ms(rng, config.view_delay_median_s, config.view_delay_sigma, rows, config)
        appeal = assessment.appeal[rows]
        typical = config.dwell_median_s * (1.0 + config.dwell_appeal_gain * appeal)
        dwell_s = np.minimum(
            typical * rng.lognormal(0.0, config.dwell_sigma, rows.shape[0]), config.max_dwell_s
        )
        no_value = np.full(rows.shape[0], np.nan)
        events.add(rows, np.full_like(rows, events_pb2.REWARD_TYPE_VIEW), view_ms, no_value)
        dwell_ms = view_ms + np.rint(dwell_s * 1000.0).astype(np.int64)
        events.add(rows, np.full_like(rows, events_pb2.REWARD_TYPE_DWELL), dwell_ms, dwell_s)

    def _engagements(self, events: _Events, rows: IntArray, rng: np.random.Generator) -> None:
        config = self.config
        primary = rng.choice(len(self._action_p), size=rows.shape[0], p=self._action_p)
        second = rng.choice(len(self._action_p), size=rows.shape[0], p=self._action_p)
        extra = (rng.random(rows.shape[0]) < config.second_action_prob) & (second != primary)
        all_rows = np.concatenate([rows, rows[extra]])
        actions = np.concatenate([primary, second[extra]])
        delays = _delays_ms(
            rng, config.engagement_delay_median_s, config.engagement_delay_sigma, all_rows, config
        )
        no_value = np.full(all_rows.shape[0], np.nan)
        events.add(all_rows, _POSITIVE_TYPES[actions], delays, no_value)

    def _negatives(self, events: _Events, rows: IntArray, rng: np.random.Generator) -> None:
        config = self.config
        kinds = rng.choice(len(self._negative_p), size=rows.shape[0], p=self._negative_p)
        types = _NEGATIVE_TYPES[kinds]
        quick = _delays_ms(rng, config.view_delay_median_s, config.view_delay_sigma, rows, config)
        slow = _delays_ms(
            rng, config.engagement_delay_median_s, config.engagement_delay_sigma, rows, config
        )
        delays = np.where(types == events_pb2.REWARD_TYPE_HIDE, quick, slow)
        events.add(rows, types, delays, np.full(rows.shape[0], np.nan))


def _delays_ms(
    rng: np.random.Generator, median_s: float, sigma: float, rows: IntArray, config: BehaviourConfig
) -> IntArray:
    """Lognormal delays in ms (at least 1 ms, at most ``config.max_delay_s``), one per row."""
    seconds = rng.lognormal(np.log(median_s), sigma, rows.shape[0])
    seconds = np.minimum(seconds, config.max_delay_s)
    delays: IntArray = np.maximum(np.rint(seconds * 1000.0), 1.0).astype(np.int64)
    return delays


def _rewards(
    events: _Events, posts: IntArray, user: str, decision_id: str, impression_ms: int
) -> list[events_pb2.Reward]:
    if not events.rows:
        return []
    rows = np.concatenate(events.rows)
    types = np.concatenate(events.types)
    values = np.concatenate(events.values)
    times = impression_ms + np.concatenate(events.delays_ms)
    order = np.argsort(times, kind="stable")
    rewards = []
    for row, kind, value, ts in zip(
        posts[rows[order]].tolist(),
        types[order].tolist(),
        values[order].tolist(),
        times[order].tolist(),
        strict=True,
    ):
        reward = events_pb2.Reward(
            decision_id=decision_id,
            post_id=post_id(row),
            user_id=user,
            type=events_pb2.RewardType.ValueType(kind),
            ts_ms=ts,
        )
        if not math.isnan(value):  # only dwell carries a value
            reward.value = value
        rewards.append(reward)
    return rewards
