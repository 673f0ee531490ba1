"""Contract checks every learner must pass (in the spirit of river's ``checks``).

A learner learns from :class:`ExampleBatch` micro-batches and predicts engagement
probabilities; it saves to and loads from a directory. Each check takes a factory
``make(seed)`` returning a fresh learner and sample batches, and raises AssertionError
(or lets the learner's own error through) when the contract is broken:

* seeded runs are reproducible, and different seeds differ;
* learning and predicting do not mutate their inputs;
* save → load round-trips exactly: same predictions, and continued learning identical;
* users and posts never seen in training are scored (finite probabilities);
* NaN in the inputs is rejected before any weight changes.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import post_keys
from feedrank.learners.examples import ExampleBatch, InvalidExampleError

F64Array = npt.NDArray[np.float64]


class Learner(Protocol):
    """What every learner offers."""

    def learn(self, batch: ExampleBatch) -> float:
        """Learn from ``batch``; a loss."""
        ...

    def predict_proba(self, batch: ExampleBatch) -> F64Array:
        """P(engaged) per example."""
        ...

    def save(self, directory: Path) -> None:
        """Everything needed to continue exactly, under ``directory``."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """A learner saved by :meth:`save`."""
        ...


LearnerFactory = Callable[[int], Learner]
Check = Callable[[LearnerFactory, list[ExampleBatch], Path], None]


def check_seeded_runs_are_reproducible(
    make: LearnerFactory, batches: list[ExampleBatch], workdir: Path
) -> None:
    first, second, other = make(0), make(0), make(1)
    for batch in batches:
        first.learn(batch)
        second.learn(batch)
        other.learn(batch)
    probe = batches[-1]
    assert np.array_equal(first.predict_proba(probe), second.predict_proba(probe)), (
        "two runs with the same seed and data predict differently"
    )
    assert not np.array_equal(first.predict_proba(probe), other.predict_proba(probe)), (
        "different seeds gave identical models: the seed is not used"
    )


def check_inputs_are_not_mutated(
    make: LearnerFactory, batches: list[ExampleBatch], workdir: Path
) -> None:
    learner = make(0)
    for batch in batches:
        before = copy.deepcopy(batch)
        learner.learn(batch)
        learner.predict_proba(batch)
        _assert_same_batch(before, batch)


def check_save_load_round_trips(
    make: LearnerFactory, batches: list[ExampleBatch], workdir: Path
) -> None:
    original = make(0)
    original.learn(batches[0])
    original.save(workdir / "saved")
    loaded = type(original).load(workdir / "saved")
    probe = batches[-1]
    assert np.array_equal(original.predict_proba(probe), loaded.predict_proba(probe)), (
        "a loaded learner predicts differently from the one saved"
    )
    for batch in batches[1:]:
        original.learn(batch)
        loaded.learn(batch)
    assert np.array_equal(original.predict_proba(probe), loaded.predict_proba(probe)), (
        "a loaded learner continues differently from the one saved (optimizer or RNG lost)"
    )


def check_unseen_users_and_posts(
    make: LearnerFactory, batches: list[ExampleBatch], workdir: Path
) -> None:
    learner = make(0)
    for batch in batches:
        learner.learn(batch)
    unseen = _with_unseen_ids(batches[-1])
    probabilities = learner.predict_proba(unseen)
    assert probabilities.shape == (len(unseen),)
    assert np.isfinite(probabilities).all()
    assert ((probabilities > 0) & (probabilities < 1)).all()


def check_nan_is_rejected(make: LearnerFactory, batches: list[ExampleBatch], workdir: Path) -> None:
    learner = make(0)
    learner.learn(batches[0])
    probe = batches[-1]
    before = learner.predict_proba(probe)
    content = batches[0].posts.content.copy()
    content[0, 0] = np.nan
    poisoned = copy.copy(batches[0])  # bypass the batch's own validation, as a bug might
    object.__setattr__(poisoned, "posts", dataclasses.replace(batches[0].posts, content=content))
    try:
        learner.learn(poisoned)
    except (InvalidExampleError, ValueError):
        pass
    else:
        raise AssertionError("a batch holding NaN was learned from")
    assert np.array_equal(before, learner.predict_proba(probe)), "a rejected batch changed weights"


ALL_CHECKS: tuple[Check, ...] = (
    check_seeded_runs_are_reproducible,
    check_inputs_are_not_mutated,
    check_save_load_round_trips,
    check_unseen_users_and_posts,
    check_nan_is_rejected,
)


def yield_checks() -> Iterator[Check]:
    """Every contract check, for ``pytest.mark.parametrize``."""
    yield from ALL_CHECKS


def _with_unseen_ids(batch: ExampleBatch) -> ExampleBatch:
    users = tuple(
        dataclasses.replace(user, user_id=f"never-seen-{row}", known=row % 2 == 0)
        for row, user in enumerate(batch.users)
    )
    posts = dataclasses.replace(
        batch.posts,
        post_index=batch.posts.post_index + 10_000_000,
        post_key=post_keys([f"never-seen-post-{row}" for row in range(len(batch))]),
        impressions=np.zeros_like(batch.posts.impressions),
    )
    return dataclasses.replace(batch, users=users, posts=posts)


def _assert_same_batch(before: ExampleBatch, after: ExampleBatch) -> None:
    assert before.users == after.users, "users were mutated"
    assert before.keys == after.keys, "keys were mutated"
    for name in ("labels", "propensities", "positions", "decision_time_ms"):
        assert np.array_equal(getattr(before, name), getattr(after, name)), f"{name} mutated"
    for item in dataclasses.fields(before.posts):
        old, new = getattr(before.posts, item.name), getattr(after.posts, item.name)
        assert np.array_equal(old, new), f"posts.{item.name} was mutated"
