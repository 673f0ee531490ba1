"""Labelled examples from the simulated world, for bootstrap training and benchmarks.

Decisions are made in event-time order: a sampled user is shown ``slate_size`` posts
by the logging policy, the features of both are read from the point-in-time feature
store at the decision time, and :meth:`BehaviourModel.respond` says what the user will
do. An item is labelled engaged when a like, comment, share or save arrives within the
reward window (as the join does). Rewards update the store with their own timestamps,
so later decisions see engagement counts only once they have happened.

Each decision draws a pool of ``pool_size`` random eligible posts in the user's
language. Without a scorer the logging policy is uniform: ``slate_size`` posts of the
pool in random order, so the conditional propensity of position ``j`` is
``1 / (pool_size - j)``. With a scorer (a trained model, as in the closed loop) the
pool is ordered by score and the explore service's exploration policy (epsilon-greedy
by default) picks the slate and logs its propensities. The behaviour model's oracle
methods are never called here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.core.exploration import EpsilonGreedy, ExplorationPolicy, seed_for_decision
from feedrank.core.feature_schema import (
    FloatArray,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
    user_id,
)
from feedrank.features import InMemoryFeatureStore, apply_reward
from feedrank.simulate.world import BehaviourModel, World
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.v1 import events_pb2

ENGAGEMENT_TYPES = frozenset(
    {
        events_pb2.REWARD_TYPE_LIKE,
        events_pb2.REWARD_TYPE_COMMENT,
        events_pb2.REWARD_TYPE_SHARE,
        events_pb2.REWARD_TYPE_SAVE,
    }
)
_BREAKDOWN_FIELD = {
    events_pb2.REWARD_TYPE_VIEW: "views",
    events_pb2.REWARD_TYPE_LIKE: "likes",
    events_pb2.REWARD_TYPE_COMMENT: "comments",
    events_pb2.REWARD_TYPE_SHARE: "shares",
    events_pb2.REWARD_TYPE_SAVE: "saves",
    events_pb2.REWARD_TYPE_HIDE: "hides",
    events_pb2.REWARD_TYPE_REPORT: "reports",
    events_pb2.REWARD_TYPE_BLOCK: "blocks",
}
UNIFORM_POLICY_VERSION = "simulated-uniform"

Scorer = Callable[[UserFeatures, PostFeatureBatch, int], npt.NDArray[np.floating[Any]]]
"""Scores of the pool's posts for a user at a time (higher is better)."""


@dataclass(frozen=True)
class SimulationConfig:
    """How simulated traffic is generated."""

    slate_size: int = 10
    pool_size: int = 100
    decision_interval_ms: int = 2_000  # event time between consecutive decisions
    reward_window_ms: int = 14 * 24 * 3_600_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.slate_size <= self.pool_size:
            raise ValueError("need 1 <= slate_size <= pool_size")
        if self.decision_interval_ms < 0 or self.reward_window_ms <= 0:
            raise ValueError("decision_interval_ms must be >= 0 and reward_window_ms > 0")


class ExampleSimulator:
    """Makes decisions in the world and labels them; ``store`` evolves as it goes."""

    def __init__(
        self,
        world: World,
        config: SimulationConfig | None = None,
        *,
        store: InMemoryFeatureStore | None = None,
        start_ms: int | None = None,
        scorer: Scorer | None = None,
        policy: ExplorationPolicy | None = None,
        model_version: str = "",
    ) -> None:
        self.world = world
        self.config = config or SimulationConfig()
        self.store = store or InMemoryFeatureStore(catalogue_from_world(world))
        self.behaviour = BehaviourModel(world, seed=self.config.seed)
        self.rng = np.random.default_rng(self.config.seed)
        self.now_ms = world.config.start_ms if start_ms is None else start_ms
        self._decisions = 0
        self.scorer = scorer
        self.policy = policy or EpsilonGreedy(epsilon=0.2, pool_size=self.config.pool_size)
        self.model_version = model_version or (UNIFORM_POLICY_VERSION if scorer is None else "")
        languages = np.asarray(world.posts.language)
        self._posts_by_language = [
            np.flatnonzero(languages == code).astype(np.int64)
            for code in range(languages.max() + 1)
        ]

    def examples(self, count: int) -> list[events_pb2.LabelledExample]:
        """At least ``count`` examples (whole slates), in decision order."""
        examples: list[events_pb2.LabelledExample] = []
        for slate in self.slates():
            examples.extend(slate)
            if len(examples) >= count:
                break
        return examples

    def slates(self) -> Iterator[list[events_pb2.LabelledExample]]:
        """Decision after decision, forever: the labelled examples of each."""
        while True:
            slate = self.decide(int(self.rng.integers(self.world.num_users)))
            self.now_ms += self.config.decision_interval_ms
            if slate:
                yield slate

    def decide(self, user_row: int) -> list[events_pb2.LabelledExample]:
        """Show ``user_row`` a slate now; its labelled examples (or none)."""
        config, store, at_ms = self.config, self.store, self.now_ms
        user = store.user_features(user_id(user_row), at_ms)
        pool = self._pool(user.language, user.country, at_ms)
        if pool.size == 0:
            return []
        self._decisions += 1
        decision_id = f"sim-{config.seed}-{self._decisions}"
        shown, propensities, policy_kind = self._slate(user, pool, at_ms, decision_id)
        posts = store.post_features(shown, at_ms)
        rewards = self.behaviour.respond(
            user_row, shown, decision_id=decision_id, impression_ms=at_ms, rng=self.rng
        )
        store.record_impressions(shown, at_ms)
        store.record_seen(user.user_id, shown, at_ms)
        for reward in rewards:
            apply_reward(store, reward)
        user_proto = user.to_proto()
        labels = _labels(rewards, at_ms + config.reward_window_ms)
        return [
            _example(
                decision_id=decision_id,
                user_proto=user_proto,
                user=user.user_id,
                post=post,
                position=position,
                propensity=float(propensity),
                features=features,
                at_ms=at_ms,
                window_end_ms=at_ms + config.reward_window_ms,
                label=labels.get(post),
                model_version=self.model_version,
                policy_kind=policy_kind,
            )
            for position, (post, propensity, features) in enumerate(
                zip(store.post_ids(shown), propensities.tolist(), posts.to_protos(), strict=True)
            )
        ]

    def _slate(
        self, user: UserFeatures, pool: IntArray, at_ms: int, decision_id: str
    ) -> tuple[IntArray, FloatArray, int]:
        """Shown posts, their conditional propensities and the policy kind."""
        limit = min(self.config.slate_size, pool.size)
        if self.scorer is None:
            shown = pool[:limit]
            left = pool.size - np.arange(limit)
            return shown, (1.0 / left).astype(np.float32), events_pb2.EXPLORATION_POLICY_UNSPECIFIED
        scores = np.asarray(self.scorer(user, self.store.post_features(pool, at_ms), at_ms))
        order = np.argsort(-scores, kind="stable")
        slate = self.policy.choose(scores[order], limit, seed_for_decision(decision_id))
        shown = pool[order][slate.rows]
        return shown, slate.propensities.astype(np.float32), self.policy.kind

    def _pool(self, language: int, country: int, at_ms: int) -> IntArray:
        """``pool_size`` eligible posts in the user's language, in random order."""
        posts = self.world.posts
        candidates = self._posts_by_language[language]
        eligible = candidates[
            (posts.created_ms[candidates] <= at_ms)
            & (~posts.region_locked[candidates] | (posts.country[candidates] == country))
        ]
        size = min(self.config.pool_size, eligible.size)
        pool: IntArray = self.rng.choice(eligible, size=size, replace=False).astype(np.int64)
        return pool


@dataclass
class _Label:
    engaged_ms: int | None
    counts: dict[str, float]


def _labels(rewards: list[events_pb2.Reward], window_end_ms: int) -> dict[str, _Label]:
    labels: dict[str, _Label] = {}
    for reward in rewards:  # ordered by ts_ms
        if reward.ts_ms > window_end_ms:
            break
        label = labels.setdefault(reward.post_id, _Label(None, {}))
        if reward.type == events_pb2.REWARD_TYPE_DWELL:
            label.counts["dwell_seconds"] = label.counts.get("dwell_seconds", 0.0) + reward.value
        else:
            name = _BREAKDOWN_FIELD[reward.type]
            label.counts[name] = label.counts.get(name, 0.0) + 1
        if reward.type in ENGAGEMENT_TYPES and label.engaged_ms is None:
            label.engaged_ms = reward.ts_ms
    return labels


def _example(
    *,
    decision_id: str,
    user_proto: events_pb2.FeatureVector,
    user: str,
    post: str,
    position: int,
    propensity: float,
    features: events_pb2.FeatureVector,
    at_ms: int,
    window_end_ms: int,
    label: _Label | None,
    model_version: str,
    policy_kind: int,
) -> events_pb2.LabelledExample:
    engaged = label is not None and label.engaged_ms is not None
    counts = label.counts if label is not None else {}
    breakdown = events_pb2.RewardBreakdown(dwell_seconds=counts.get("dwell_seconds", 0.0))
    for name in _BREAKDOWN_FIELD.values():
        setattr(breakdown, name, int(counts.get(name, 0)))
    label_ms = label.engaged_ms if label is not None and label.engaged_ms is not None else None
    return events_pb2.LabelledExample(
        decision_id=decision_id,
        user_id=user,
        post_id=post,
        decision_time_ms=at_ms,
        label_time_ms=label_ms if label_ms is not None else window_end_ms,
        position=position,
        score=0.0,
        propensity=propensity,
        model_version=model_version,
        arm="simulated",
        exploration_policy=events_pb2.ExplorationPolicy.ValueType(policy_kind),
        user_features=user_proto,
        post_features=features,
        reward=1.0 if engaged else 0.0,
        engaged=engaged,
        breakdown=breakdown,
    )
