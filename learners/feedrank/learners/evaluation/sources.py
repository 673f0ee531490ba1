"""Where logged data for evaluation comes from: a replay file or ``feedrank.examples``."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from feedrank.core.kafka_clients import KafkaTarget
from feedrank.learners.evaluation.logged_data import LoggedBandit, from_examples, from_replay_rows
from feedrank.learners.replay import FileFormat, read_replay
from feedrank.learners.sources import read_kafka_range


@dataclass(frozen=True)
class LoadedLogs:
    """Logged data and what was left out on the way."""

    logs: LoggedBandit
    source: str
    rejected: list[str] = field(default_factory=list)  # one reason per left-out record
    complete: bool = True


def from_replay_file(
    path: Path, file_format: FileFormat | None = None, per_row_columns: Collection[str] = ()
) -> LoadedLogs:
    """The good rows of a replay file (bad ones are listed in ``rejected``).

    ``per_row_columns`` (e.g. a target-probability column) may differ between the rows
    of a decision; they land in ``LoggedBandit.item_numeric``.
    """
    replay = read_replay(path, file_format, per_row_columns)
    decision_ids = [decision.decision_id for decision in replay.decisions for _ in decision.rows]
    return LoadedLogs(
        logs=from_replay_rows(replay.rows, decision_ids),
        source=str(path),
        rejected=[str(error) for error in replay.errors],
    )


def load_logs(
    replay_file: Path | None,
    *,
    kafka: bool,
    bootstrap: KafkaTarget,
    topic: str,
    file_format: FileFormat | None = None,
    per_row_columns: Collection[str] = (),
) -> LoadedLogs:
    """Logged data from ``replay_file`` (``per_row_columns`` as in
    :func:`from_replay_file`) or, with ``kafka``, from the examples ``topic``; exactly
    one of the two, else ValueError (as for a topic without labelled examples)."""
    if (replay_file is None) == (not kafka):
        raise ValueError("give exactly one source: --logs FILE or --from-kafka")
    if replay_file is not None:
        return from_replay_file(replay_file, file_format, per_row_columns)
    loaded = from_kafka(bootstrap, topic)
    if loaded.logs.num_rows == 0:
        raise ValueError(f"no labelled examples on {topic}")
    return loaded


def from_kafka(bootstrap: KafkaTarget, topic: str, timeout_s: float = 60.0) -> LoadedLogs:
    """Every labelled example on ``topic`` up to its end offsets when reading started."""
    batch = read_kafka_range(bootstrap, topic, timeout_s=timeout_s)
    rejected = [f"{batch.undecodable} records are not LabelledExample"] if batch.undecodable else []
    return LoadedLogs(
        logs=from_examples(batch.examples),
        source=f"kafka topic {topic}",
        rejected=rejected,
        complete=batch.complete,
    )
