"""A replay file, validated: the good rows grouped into decisions, and every bad row with
its line number and reason.

Rows of one decision (same ``decision_id``) must agree on what belongs to the decision
(time, user, model version, arm, context features) and must not repeat a position or a
post; a row that breaks this is rejected, naming the line it conflicts with. Without a
``decision_id`` column every row is its own decision, named
``replay-<first 12 hex digits of the file's sha256>-<line>`` so that replaying the same
file twice gives the same ids.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

from feedrank.learners.replay.formats import FileFormat, RawTable, read_table
from feedrank.learners.replay.rows import LoggedRow, RowError, parse_row

_DIGEST_CHARS = 12


@dataclass(frozen=True)
class ReplayDecisionRows:
    """The rows of one decision, by position."""

    decision_id: str
    rows: tuple[LoggedRow, ...]


@dataclass
class ReplayLog:
    """What a replay file holds once validated."""

    path: Path
    total_rows: int
    decisions: list[ReplayDecisionRows] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows(self) -> list[LoggedRow]:
        """Good rows, decision by decision, each decision by position."""
        return [row for decision in self.decisions for row in decision.rows]

    @property
    def loaded_rows(self) -> int:
        return sum(len(decision.rows) for decision in self.decisions)


def read_replay(
    path: Path, file_format: FileFormat | None = None, per_row_columns: Collection[str] = ()
) -> ReplayLog:
    """Read and validate a replay file; bad rows go to ``errors``, never raise.

    ``per_row_columns`` are feature columns that may differ between the rows of a
    decision (kept with each row's item features), e.g. a target-probability column.
    """
    table = read_table(path, file_format)
    table = replace(table, features=replace(table.features, per_row=frozenset(per_row_columns)))
    log = ReplayLog(path=path, total_rows=len(table.records))
    groups: dict[str, list[LoggedRow]] = {}
    for row in _parsed_rows(table, log.errors):
        decision_id = row.decision_id or f"replay-{table.digest[:_DIGEST_CHARS]}-{row.line}"
        members = groups.setdefault(decision_id, [])
        conflict = _conflict(row, members)
        if conflict is not None:
            log.errors.append(conflict)
            continue
        members.append(row)
    log.decisions = [
        ReplayDecisionRows(decision_id, tuple(sorted(rows, key=lambda row: row.position)))
        for decision_id, rows in groups.items()
        if rows
    ]
    log.errors.sort(key=lambda error: error.line)
    return log


def _parsed_rows(table: RawTable, errors: list[RowError]) -> list[LoggedRow]:
    rows = []
    for record in table.records:
        if record.problem is not None:
            errors.append(RowError(record.line, None, record.problem))
            continue
        try:
            rows.append(parse_row(record.line, record.cells, table.features))
        except RowError as error:
            errors.append(error)
    return rows


def _conflict(row: LoggedRow, members: list[LoggedRow]) -> RowError | None:
    """Why ``row`` cannot join the decision of ``members`` (None when it can)."""
    if not members:
        return None
    first = members[0]
    shared = {
        "timestamp": (row.event_time_ms, first.event_time_ms),
        "user_id": (row.user_id, first.user_id),
        "model_version": (row.model_version, first.model_version),
        "arm": (row.arm, first.arm),
        "context features": (row.context, first.context),
    }
    for name, (mine, theirs) in shared.items():
        if mine != theirs:
            return RowError(
                row.line, None, f"{name}: not the same as on line {first.line} of the same decision"
            )
    for other in members:
        if other.position == row.position:
            return RowError(
                row.line, "position", f"{row.position} repeats line {other.line}'s position"
            )
        if other.post_id == row.post_id:
            message = f"{row.post_id!r} was already shown at line {other.line}"
            return RowError(row.line, "post_id", message)
    return None
