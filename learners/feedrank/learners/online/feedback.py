"""Which records the online learner trains on: complete labels, or fake negatives.

The join labels each shown item once: positive at its first engagement (seconds to days
after the impression), negative when the reward window closes (14 days after it). A
learner that trains on that stream as it arrives sees positives of recent decisions
next to negatives of decisions a whole window older. Anything that trends over time
then separates the classes without saying anything about appeal: post impression
counts and a user's recent engagement grow, the day of week moves on, the serving
model changes. In the closed-loop demo (a 2-day window) the learner's rolling AUC read
0.98 and each version it published ranked worse than the one before, rich-get-richer
on impression counts.

**Fake negatives** (Ktena et al., RecSys 2019) keep the stream in step with time: every
shown item is learned as a negative when its *decision* arrives (``feedrank.decisions``,
impression-time features as logged), and once more as a positive when the join reports
its engagement; the join's own negatives are skipped (the item was already learned as
one). A classifier of that stream estimates ``q = p / (1 + p)`` for the true engagement
probability ``p``: the same ranking, and ``q ~= p`` at feed engagement rates. Freshness
is unchanged: an engagement is learned as soon as the join emits it.

A compact decision's items (docs/contracts.md) are learned with their post features
re-joined from the learner's catalogue (:class:`~feedrank.learners.feature_rejoin.
PostFeatureRejoin`); an item whose post version it cannot find is not learned.

``complete`` trains on the join's examples only (each item once, its final label), which
suits replayed or backfilled examples whose decisions are not on the decisions topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from feedrank.core.labelled import labelled_example
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.v1 import events_pb2


class Feedback(StrEnum):
    FAKE_NEGATIVES = "fake_negatives"
    COMPLETE = "complete"


class Impression:
    """A shown item of a decision as a negative example labelled at impression: a view
    of the decision (a :class:`~feedrank.learners.examples.LoggedExample`), not a copy.

    Copying each decision's user features and each item's features into a
    ``LabelledExample`` cost about as much as learning from it; the view reads them
    where the decision holds them (``post_features``: the item's own, or the full ones a
    compact item's re-join gave). :meth:`to_example` builds the join's message.
    """

    __slots__ = (
        "decision",
        "decision_id",
        "decision_time_ms",
        "item",
        "position",
        "post_features",
        "post_id",
        "propensity",
        "user_features",
        "user_id",
    )
    engaged = False

    def __init__(
        self,
        decision: events_pb2.Decision,
        item: events_pb2.ShownItem,
        post_features: events_pb2.FeatureVector | None = None,
    ) -> None:
        self.decision, self.item = decision, item
        self.decision_id = decision.decision_id
        self.user_id = decision.user_id
        self.user_features = decision.user_features
        self.decision_time_ms = decision.event_time_ms
        self.post_id = item.post_id
        self.position = item.position
        self.propensity = item.propensity
        self.post_features = item.features if post_features is None else post_features

    def to_example(self) -> events_pb2.LabelledExample:
        """The negative as the ``LabelledExample`` the join would have written."""
        return labelled_example(
            self.decision, self.item, label_time_ms=self.decision_time_ms, reward=0.0
        )


def fake_negatives(
    decision: events_pb2.Decision, rejoin: PostFeatureRejoin | None = None
) -> list[Impression]:
    """Every shown item of ``decision`` as a negative example, labelled at impression; a
    compact decision's items with the post features ``rejoin`` finds (without it,
    ValueError), those it cannot left out."""
    if rejoin is not None:
        return [Impression(decision, item, full) for item, full in rejoin.shown_items(decision)]
    if any(item.catalogue_version for item in decision.items):
        raise ValueError("a compact decision's items need a re-join of their post features")
    return [Impression(decision, item) for item in decision.items]


def slate_decision(slate: Sequence[events_pb2.LabelledExample]) -> events_pb2.Decision:
    """The decision a slate's examples came from, as explore would have logged it (the
    inverse of :func:`fake_negatives`; simulators and tests produce decisions with it)."""
    first = slate[0]
    return events_pb2.Decision(
        decision_id=first.decision_id,
        event_time_ms=first.decision_time_ms,
        user_id=first.user_id,
        model_version=first.model_version,
        arm=first.arm,
        exploration_policy=first.exploration_policy,
        user_features=first.user_features,
        items=[
            events_pb2.ShownItem(
                post_id=example.post_id,
                position=example.position,
                score=example.score,
                propensity=example.propensity,
                features=example.post_features,
            )
            for example in slate
        ],
    )


def learns_from(example: events_pb2.LabelledExample, feedback: Feedback) -> bool:
    """Whether a labelled example from the join is trained on under ``feedback``."""
    return feedback is Feedback.COMPLETE or example.engaged
