"""Target policies: the probability a policy under evaluation gives each logged action.

A :class:`TargetPolicy` answers, for every logged row, ``π(a | x, a_0 .. a_{j-1})``: the
probability that the target puts the logged post at the logged position, given the
logged context and the posts logged at the decision's earlier positions (the same
conditional the logging propensities are, see ``docs/exploration.md``). Anything with
that method is a target: supplied probabilities (a column of the logs or a separate
file, here), or a registry model version (built on top of this interface elsewhere).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from feedrank.learners.evaluation.logged_data import FloatColumn, LoggedBandit
from feedrank.learners.replay.formats import FileFormat, format_of

TARGET_PROBABILITY = "target_probability"
"""Default name of the column holding target probabilities."""


class TargetPolicyError(ValueError):
    """Target probabilities that are missing, out of [0, 1] or do not match the logs."""


class TargetPolicy(Protocol):
    """The policy under evaluation, as seen through the logged actions."""

    def probabilities(self, logs: LoggedBandit) -> FloatColumn:
        """``π(logged post at logged position | context, earlier logged posts)`` per row,
        each in [0, 1]."""
        ...


@dataclass(frozen=True)
class SuppliedProbabilities:
    """Target probabilities given up front, one per logged row, in the logs' row order."""

    values: FloatColumn

    def probabilities(self, logs: LoggedBandit) -> FloatColumn:
        if self.values.shape != (logs.num_rows,):
            raise TargetPolicyError(
                f"{self.values.shape[0]} target probabilities for {logs.num_rows} logged rows"
            )
        return self.values


class LoggingPolicy:
    """The logging policy itself as a target (every weight is 1): a sanity check."""

    def probabilities(self, logs: LoggedBandit) -> FloatColumn:
        return logs.propensities


def check_probabilities(values: FloatColumn, logs: LoggedBandit) -> FloatColumn:
    """``values`` if every one is a probability, else TargetPolicyError naming rows."""
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
    if bad.size:
        where = ", ".join(_row_name(logs, int(row)) for row in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise TargetPolicyError(
            f"target probabilities must be numbers in [0, 1]; not so at {where}{more}"
        )
    return values


def from_column(logs: LoggedBandit, column: str) -> tuple[LoggedBandit, SuppliedProbabilities]:
    """Take target probabilities from a numeric column of the logs (a per-row column, else
    a context one) and drop it from the features."""
    found = logs.item_numeric.get(column, logs.context_numeric.get(column))
    if found is None:
        known = sorted({*logs.item_numeric, *logs.context_numeric})
        raise TargetPolicyError(
            f"the logs have no numeric column {column!r}; numeric columns: {known}"
        )
    values = check_probabilities(found, logs)
    return logs.without_feature(column), SuppliedProbabilities(values)


def from_file(
    path: Path,
    logs: LoggedBandit,
    column: str = TARGET_PROBABILITY,
    file_format: FileFormat | None = None,
) -> SuppliedProbabilities:
    """Target probabilities from a CSV or Parquet file, matched to the logged rows.

    The file names its rows by ``decision_id`` and ``position`` columns, or by a ``line``
    column (the row's line in the replay file); every logged row needs one match.
    """
    records = _read_records(path, format_of(path, file_format))
    if not records or column not in records[0]:
        raise TargetPolicyError(f"{path.name} has no {column!r} column")
    by_key = {_key(record, path): _probability(record[column], column) for record in records}
    values = np.full(logs.num_rows, np.nan)
    for row in range(logs.num_rows):
        key: tuple[str, ...] = (
            (str(logs.lines[row]),)
            if "line" in records[0]
            else (logs.decision_ids[row], str(logs.positions[row]))
        )
        values[row] = by_key.get(key, np.nan)
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        where = ", ".join(_row_name(logs, int(row)) for row in missing[:5])
        raise TargetPolicyError(
            f"{path.name} has no target probability for {missing.size} logged rows ({where}…)"
        )
    return SuppliedProbabilities(check_probabilities(values, logs))


def supplied_target(
    logs: LoggedBandit, probabilities: str, column: str = TARGET_PROBABILITY
) -> tuple[LoggedBandit, SuppliedProbabilities]:
    """The logs and the target probabilities ``probabilities`` names: a file (its
    ``column``; the logs as they are) when one exists there, else a column of the logs
    (dropped from their features)."""
    path = Path(probabilities)
    if path.is_file():
        return logs, from_file(path, logs, column)
    return from_column(logs, probabilities)


def per_row_target_columns(probabilities: str) -> tuple[str, ...]:
    """The columns of the logs that may differ between the rows of a decision for
    :func:`supplied_target`: the target column, unless ``probabilities`` names a file."""
    return () if Path(probabilities).is_file() else (probabilities,)


def _read_records(path: Path, kind: FileFormat) -> list[dict[str, object]]:
    if not path.is_file():
        raise TargetPolicyError(f"target probability file {path} does not exist")
    if kind == "parquet":
        records: list[dict[str, object]] = pq.read_table(path).to_pylist()
        return records
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [dict(record) for record in csv.DictReader(handle)]


def _key(record: Mapping[str, object], path: Path) -> tuple[str, ...]:
    if "line" in record:
        return (str(record["line"]).strip(),)
    if "decision_id" in record and "position" in record:
        return (str(record["decision_id"]).strip(), str(record["position"]).strip())
    raise TargetPolicyError(
        f"{path.name} must name its rows by 'decision_id' and 'position', or by 'line'"
    )


def _probability(value: object, column: str) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise TargetPolicyError(f"{column} {value!r} is not a number") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise TargetPolicyError(f"{column} {number} is not a probability in [0, 1]")
    return number


def _row_name(logs: LoggedBandit, row: int) -> str:
    if logs.lines[row] > 0:
        return f"line {logs.lines[row]}"
    return f"decision {logs.decision_ids[row]!r} position {logs.positions[row]}"
