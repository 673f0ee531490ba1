"""Fake negatives: a decision's shown items as negatives, labelled at impression."""

from __future__ import annotations

from feedrank.learners.examples import batch_from_examples
from feedrank.learners.online.feedback import Feedback, fake_negatives, learns_from
from feedrank.v1 import events_pb2
from tests.unit.learners.factories import simulated_examples


def test_every_shown_item_becomes_a_negative_with_its_logged_features() -> None:
    slate = [ex for ex in simulated_examples(200) if ex.decision_id == "sim-0-1"]
    decision = events_pb2.Decision(
        decision_id="sim-0-1",
        event_time_ms=slate[0].decision_time_ms,
        user_id=slate[0].user_id,
        model_version="v0007",
        arm="canary",
        user_features=slate[0].user_features,
        items=[
            events_pb2.ShownItem(
                post_id=ex.post_id,
                position=ex.position,
                score=0.25,
                propensity=ex.propensity,
                features=ex.post_features,
            )
            for ex in slate
        ],
    )
    negatives = fake_negatives(decision)
    assert [ex.post_id for ex in negatives] == [ex.post_id for ex in slate]
    assert not any(ex.engaged for ex in negatives)
    messages = [negative.to_example() for negative in negatives]
    assert {ex.label_time_ms for ex in messages} == {decision.event_time_ms}
    assert {(ex.model_version, ex.arm) for ex in messages} == {("v0007", "canary")}
    assert not any(ex.engaged for ex in messages)
    rebuilt, logged = batch_from_examples(negatives), batch_from_examples(slate)
    assert rebuilt.users == logged.users
    assert rebuilt.keys == logged.keys
    assert (rebuilt.labels == 0).all()
    assert (rebuilt.posts.post_index == logged.posts.post_index).all()
    assert (rebuilt.posts.content == logged.posts.content).all()
    assert (rebuilt.positions == logged.positions).all()
    assert (rebuilt.propensities == logged.propensities).all()
    assert (rebuilt.decision_time_ms == logged.decision_time_ms).all()
    # The view and the message it stands for make the same batch.
    from_messages = batch_from_examples(messages)
    assert from_messages.users == rebuilt.users
    assert (from_messages.posts.topics == rebuilt.posts.topics).all()


def test_only_complete_feedback_learns_the_joins_negatives() -> None:
    negative = events_pb2.LabelledExample(engaged=False)
    positive = events_pb2.LabelledExample(engaged=True)
    assert learns_from(negative, Feedback.COMPLETE)
    assert not learns_from(negative, Feedback.FAKE_NEGATIVES)
    assert learns_from(positive, Feedback.FAKE_NEGATIVES)
