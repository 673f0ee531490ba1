"""Logged bandit feedback as columns: what off-policy estimators read.

One row per shown item, sorted by decision and, within a decision, by position. Rows
come from a replay file (:func:`from_replay_rows`) or from labelled examples
(:func:`from_examples`, e.g. read from ``feedrank.examples``). Context features are
the decision's features (replay context columns, or ``user_features`` of an example,
a compact one's read back whole);
item features are the row's own (replay ``item_*`` and per-row columns, or
``post_features`` of an example: for a compact one, the dynamic values it logged, see
:func:`~feedrank.learners.feature_rejoin.logged_post_numbers`). Numeric ones are float
columns with NaN where a row has no value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.core.compact_features import full_user_features
from feedrank.learners.feature_rejoin import logged_post_numbers
from feedrank.learners.replay.rows import LoggedRow
from feedrank.v1 import events_pb2

FloatColumn = npt.NDArray[np.float64]
IntColumn = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LoggedBandit:
    """Logged (context, action, propensity, reward) rows, decision by decision."""

    decision_ids: tuple[str, ...]  # per row
    decision_index: IntColumn  # per row: 0 .. num_decisions - 1, non-decreasing
    positions: IntColumn
    post_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    propensities: FloatColumn  # logging policy, in (0, 1]
    rewards: FloatColumn
    lines: IntColumn  # source line in the replay file; 0 when not from a file
    context_numeric: dict[str, FloatColumn] = field(default_factory=dict)
    context_categorical: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    item_numeric: dict[str, FloatColumn] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = len(self.decision_ids)
        columns = (self.decision_index, self.positions, self.propensities, self.rewards)
        if any(column.shape != (rows,) for column in columns) or len(self.post_ids) != rows:
            raise ValueError("every column of LoggedBandit needs one entry per row")
        if rows and np.any(np.diff(self.decision_index) < 0):
            raise ValueError("rows must be sorted by decision")
        if np.any(~np.isfinite(self.propensities)) or np.any(
            (self.propensities <= 0) | (self.propensities > 1)
        ):
            raise ValueError("logged propensities must lie in (0, 1]")
        if np.any(~np.isfinite(self.rewards)):
            raise ValueError("rewards must be finite")

    @property
    def num_rows(self) -> int:
        return len(self.decision_ids)

    @property
    def num_decisions(self) -> int:
        return int(self.decision_index[-1]) + 1 if self.num_rows else 0

    def rows_per_decision(self) -> IntColumn:
        counts: IntColumn = np.bincount(self.decision_index, minlength=self.num_decisions)
        return counts

    def rank_in_decision(self) -> IntColumn:
        """0 for a decision's first logged row, 1 for its second, ..."""
        starts = np.searchsorted(self.decision_index, np.arange(self.num_decisions))
        ranks: IntColumn = np.arange(self.num_rows) - starts[self.decision_index]
        return ranks

    def without_feature(self, name: str) -> LoggedBandit:
        """The same rows without feature ``name`` (e.g. a target-probability column)."""

        def dropped(features: dict[str, Any]) -> dict[str, Any]:
            return {key: value for key, value in features.items() if key != name}

        return replace(
            self,
            context_numeric=dropped(self.context_numeric),
            context_categorical=dropped(self.context_categorical),
            item_numeric=dropped(self.item_numeric),
        )


@dataclass(frozen=True)
class _Row:
    decision_id: str
    position: int
    post_id: str
    user_id: str
    propensity: float
    reward: float
    line: int
    numeric: dict[str, float]
    categorical: dict[str, str]
    item_numeric: dict[str, float]


def from_replay_rows(rows: Iterable[LoggedRow], decision_ids: Sequence[str]) -> LoggedBandit:
    """Logged data from validated replay rows; ``decision_ids[i]`` names ``rows[i]``'s decision."""
    return _build(
        _Row(
            decision_id=decision_id,
            position=row.position,
            post_id=row.post_id,
            user_id=row.user_id,
            propensity=row.propensity,
            reward=row.reward,
            line=row.line,
            numeric=dict(row.context.numeric),
            categorical=dict(row.context.categorical),
            item_numeric=dict(row.item.numeric),
        )
        for row, decision_id in zip(rows, decision_ids, strict=True)
    )


def from_examples(examples: Iterable[events_pb2.LabelledExample]) -> LoggedBandit:
    """Logged data from labelled examples (one per shown item, reward as joined)."""
    return _build(_example_row(example) for example in examples)


def _example_row(example: events_pb2.LabelledExample) -> _Row:
    """``example`` as a row: its user's features whole (a compact one's read back)."""
    user = full_user_features(example.user_features, example.decision_time_ms)
    return _Row(
        decision_id=example.decision_id,
        position=example.position,
        post_id=example.post_id,
        user_id=example.user_id,
        propensity=example.propensity,
        reward=example.reward,
        line=0,
        numeric=dict(user.numeric),
        categorical=dict(user.categorical),
        item_numeric=logged_post_numbers(example),
    )


def _build(rows: Iterable[_Row]) -> LoggedBandit:
    first_seen: dict[str, int] = {}
    collected = list(rows)
    for row in collected:
        first_seen.setdefault(row.decision_id, len(first_seen))
    collected.sort(key=lambda row: (first_seen[row.decision_id], row.position))
    numeric_names = sorted({name for row in collected for name in row.numeric})
    item_names = sorted({name for row in collected for name in row.item_numeric})
    categorical_names = sorted({name for row in collected for name in row.categorical})
    return LoggedBandit(
        decision_ids=tuple(row.decision_id for row in collected),
        decision_index=np.array([first_seen[row.decision_id] for row in collected], np.int64),
        positions=np.array([row.position for row in collected], dtype=np.int64),
        post_ids=tuple(row.post_id for row in collected),
        user_ids=tuple(row.user_id for row in collected),
        propensities=np.array([row.propensity for row in collected], dtype=np.float64),
        rewards=np.array([row.reward for row in collected], dtype=np.float64),
        lines=np.array([row.line for row in collected], dtype=np.int64),
        context_numeric={
            name: np.array([row.numeric.get(name, np.nan) for row in collected], np.float64)
            for name in numeric_names
        },
        context_categorical={
            name: tuple(row.categorical.get(name) for row in collected)
            for name in categorical_names
        },
        item_numeric={
            name: np.array([row.item_numeric.get(name, np.nan) for row in collected], np.float64)
            for name in item_names
        },
    )
