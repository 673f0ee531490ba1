"""Validated replay rows as Kafka events: one ``Decision`` per decision, one ``Reward`` per
row with a positive reward.

The events go through the shared codec (:mod:`feedrank.core.codecs`) before they leave:
each is encoded and decoded back with the same checks every consumer applies, so replay
never produces what the join would dead-letter.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedrank.core import codecs
from feedrank.learners.replay.reader import ReplayDecisionRows
from feedrank.learners.replay.rows import Features, LoggedRow
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class ReplayEvents:
    """The events of one decision, encoded for Kafka (key: the user id)."""

    key: bytes
    decision: bytes
    rewards: tuple[bytes, ...]


def feature_vector(features: Features) -> events_pb2.FeatureVector:
    return events_pb2.FeatureVector(
        numeric=dict(features.numeric), categorical=dict(features.categorical)
    )


def to_decision(decision: ReplayDecisionRows) -> events_pb2.Decision:
    """The ``Decision`` event of a decision's rows (the first row holds the shared fields)."""
    first = decision.rows[0]
    return events_pb2.Decision(
        decision_id=decision.decision_id,
        event_time_ms=first.event_time_ms,
        user_id=first.user_id,
        model_version=first.model_version,
        arm=first.arm,
        exploration_policy=events_pb2.EXPLORATION_POLICY_UNSPECIFIED,
        user_features=feature_vector(first.context),
        items=[
            events_pb2.ShownItem(
                post_id=row.post_id,
                position=row.position,
                score=row.score,
                propensity=row.propensity,
                features=feature_vector(row.item),
            )
            for row in decision.rows
        ],
    )


def to_reward(decision_id: str, row: LoggedRow) -> events_pb2.Reward:
    """The ``Reward`` event of a row with a positive reward (``value`` = the reward)."""
    return events_pb2.Reward(
        decision_id=decision_id,
        post_id=row.post_id,
        user_id=row.user_id,
        type=codecs.REWARD_TYPES[row.reward_type],
        value=row.reward,
        ts_ms=row.reward_time_ms,
    )


def to_events(decision: ReplayDecisionRows) -> ReplayEvents:
    """Encode a decision and its rewards, checked by the shared codec on the way out."""
    decision_bytes = codecs.encode(to_decision(decision))
    codecs.decode_decision(decision_bytes)
    rewards = []
    for row in decision.rows:
        if row.reward > 0:
            reward_bytes = codecs.encode(to_reward(decision.decision_id, row))
            codecs.decode_reward(reward_bytes)
            rewards.append(reward_bytes)
    return ReplayEvents(
        key=decision.rows[0].user_id.encode(), decision=decision_bytes, rewards=tuple(rewards)
    )
