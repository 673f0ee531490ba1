"""A shown item of a decision as a labelled example, as the online learner (fake
negatives at impression) builds ``LabelledExample``. The join writes the same message
straight from the decision's bytes (``feedrank.streaming.example_wire``, tested to parse
to what this builds)."""

from __future__ import annotations

from feedrank.v1 import events_pb2


def labelled_example(
    decision: events_pb2.Decision,
    item: events_pb2.ShownItem,
    *,
    label_time_ms: int,
    reward: float,
    breakdown: events_pb2.RewardBreakdown | None = None,
) -> events_pb2.LabelledExample:
    """``item`` of ``decision`` with its impression-time features, labelled ``reward``
    (engaged when positive) at ``label_time_ms``."""
    return events_pb2.LabelledExample(
        decision_id=decision.decision_id,
        user_id=decision.user_id,
        post_id=item.post_id,
        decision_time_ms=decision.event_time_ms,
        label_time_ms=label_time_ms,
        position=item.position,
        score=item.score,
        propensity=item.propensity,
        model_version=decision.model_version,
        arm=decision.arm,
        exploration_policy=decision.exploration_policy,
        user_features=decision.user_features,
        post_features=item.features,
        reward=reward,
        engaged=reward > 0,
        breakdown=breakdown,
        catalogue_version=item.catalogue_version,
        post_feature_names=decision.item_feature_names,
    )
