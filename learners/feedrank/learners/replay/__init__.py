"""Replay of logged bandit feedback: CSV or Parquet rows in, Decision and Reward events out.

``read_replay`` validates a file (bad rows are reported with their line numbers and
skipped), ``to_events`` turns a decision's rows into encoded events through the shared
codec, and ``ReplayProducer`` sends them to Kafka. Format: ``docs/replay-and-evaluation.md``.
"""

from feedrank.learners.replay.events import ReplayEvents, to_decision, to_events, to_reward
from feedrank.learners.replay.formats import FileFormat, ReplayFormatError, read_table
from feedrank.learners.replay.producer import (
    DeliveryReport,
    ReplayProducer,
    ReplayTopics,
    ensure_replay_topics,
)
from feedrank.learners.replay.reader import ReplayDecisionRows, ReplayLog, read_replay
from feedrank.learners.replay.rows import Features, LoggedRow, RowError

__all__ = [
    "DeliveryReport",
    "Features",
    "FileFormat",
    "LoggedRow",
    "ReplayDecisionRows",
    "ReplayEvents",
    "ReplayFormatError",
    "ReplayLog",
    "ReplayProducer",
    "ReplayTopics",
    "RowError",
    "ensure_replay_topics",
    "read_replay",
    "read_table",
    "to_decision",
    "to_events",
    "to_reward",
]
