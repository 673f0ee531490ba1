"""The demo's gate report: versions' off-policy estimates read through Deploy.ListModels
(a real server over a real registry) beside the canaries the simulator measured, as a
table and a plot; a deploy service that cannot be reached gives one line, not a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health
from rich.console import Console

from feedrank.core.clock import ManualClock
from feedrank.core.settings import TlsSettings, load_settings
from feedrank.core.time_units import HOUR_MS
from feedrank.deploy.access import Credentials
from feedrank.deploy.server import build_control
from feedrank.deploy.service import build_server
from feedrank.registry import LocalModelRegistry, TrainingData
from feedrank.registry.off_policy import PairedEstimate
from feedrank.simulate.engagement import EngagementLedger
from feedrank.simulate.ope_report import canary_measures, gate_report_lines
from feedrank.v1 import events_pb2

START_MS = 1_764_000_000_000


def estimate(difference: float) -> dict[str, float]:
    return PairedEstimate(
        value=0.1 + difference,
        std_error=0.01,
        reference="v0001",
        reference_value=0.1,
        difference=difference,
        difference_std_error=0.004,
        effective_samples=800.0,
        decisions=1_000,
    ).to_metrics()


@pytest.fixture
def deploy_address(tmp_path: Path) -> Iterator[str]:
    settings = load_settings(paths={"state_dir": tmp_path})
    registry = LocalModelRegistry(settings.paths.registry)

    def write(directory: Path) -> None:
        (directory / "weights.bin").write_bytes(b"w")

    for metrics in ({}, estimate(-0.02), estimate(0.01)):
        registry.publish(
            write,
            training=TrainingData(source="test", examples=1, start_ms=1, end_ms=2),
            metrics=metrics,
        )
    control = build_control(settings, ManualClock(START_MS), registry=registry)
    server, port = build_server(
        control, health.HealthServicer(), address="127.0.0.1:0", credentials=Credentials({}, {})
    )
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def feeds(ledger: EngagementLedger, arm: str, hour: int, shown: int, engaged: int) -> None:
    at_ms = START_MS + hour * HOUR_MS
    rewards = [
        events_pb2.Reward(post_id=f"p{row}", type=events_pb2.REWARD_TYPE_LIKE, ts_ms=at_ms + 1)
        for row in range(engaged)
    ]
    ledger.record_feed(arm, at_ms, shown, rewards)


def test_estimates_stand_beside_the_canaries_measured(deploy_address: str, tmp_path: Path) -> None:
    ledger = EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=HOUR_MS)
    feeds(ledger, "stable/v0001", 0, 100, 10)
    feeds(ledger, "stable/v0001", 1, 100, 10)
    feeds(ledger, "canary/v0003", 1, 100, 14)  # v0002 was refused: never a canary
    measures = canary_measures(ledger)
    assert set(measures) == {"v0003"}
    assert measures["v0003"].difference == pytest.approx(0.14 - 0.10)

    lines = gate_report_lines(ledger, deploy_address, TlsSettings(), tmp_path)
    console = Console(width=160, record=True)
    for line in lines:
        console.print(line)
    text = console.export_text()
    assert "v0002" in text
    assert "-0.0200" in text
    assert "+0.0400" in text  # v0003's canary, measured
    assert (tmp_path / "ope_vs_canary.png").stat().st_size > 0


def test_an_unreachable_deploy_service_gives_one_line(tmp_path: Path) -> None:
    ledger = EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=HOUR_MS)
    lines = gate_report_lines(ledger, "127.0.0.1:1", TlsSettings(), tmp_path)
    assert len(lines) == 1
    assert "UNAVAILABLE" in str(lines[0])
