"""Publishing a replay file: every decision sent with its rewards, then one flush."""

from __future__ import annotations

from pathlib import Path

from feedrank.learners.replay import DeliveryReport, ReplayEvents, read_replay
from feedrank.learners.replay.producer import (
    ACKNOWLEDGED,
    SENDING,
    WAITING,
    publish_replay,
)

TS = 1_764_000_000_000


class FakeSender:
    """Counts what it is given and acknowledges all of it on flush."""

    def __init__(self) -> None:
        self.sent: list[ReplayEvents] = []
        self.flushes = 0

    def send(self, events: ReplayEvents) -> None:
        self.sent.append(events)

    def flush(self, timeout_s: float = 60.0) -> DeliveryReport:
        self.flushes += 1
        rewards = sum(len(events.rewards) for events in self.sent)
        return DeliveryReport(decisions=len(self.sent), rewards=rewards)


def _log(tmp_path: Path) -> Path:
    path = tmp_path / "logs.csv"
    path.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward\n"
        f"d1,{TS},u1,p1,0,0.5,1\n"
        f"d1,{TS},u1,p2,1,0.5,0\n"
        f"d2,{TS},u2,p3,0,0.5,1\n"
        f"d3,{TS},u3,p4,0,0.5,0\n"
    )
    return path


def test_every_decision_is_sent_then_flushed_once(tmp_path: Path) -> None:
    log = read_replay(_log(tmp_path))
    sender = FakeSender()
    report = publish_replay(log, sender)
    assert [events.key for events in sender.sent] == [b"u1", b"u2", b"u3"]
    assert sender.flushes == 1
    assert (report.decisions, report.rewards, report.failed) == (3, 2, 0)


def test_progress_hears_each_decision_and_each_stage(tmp_path: Path) -> None:
    log = read_replay(_log(tmp_path))
    heard: list[tuple[str, int]] = []
    publish_replay(log, FakeSender(), lambda stage, sent: heard.append((stage, sent)))
    assert heard == [(SENDING, 1), (SENDING, 2), (SENDING, 3), (WAITING, 3), (ACKNOWLEDGED, 3)]
