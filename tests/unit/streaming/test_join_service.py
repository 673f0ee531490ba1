"""The join service's wiring: gauges from the job's status, the exporter beside the job,
and how the run ended. The gateway, the job and the exporter are stand-ins here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from feedrank.core.settings import Settings, load_settings
from feedrank.streaming import join_runner, join_service, metrics_exporter
from feedrank.streaming.join_service import JoinReporter, run_join_service
from feedrank.streaming.join_status import JoinRun, JoinStatus

RunJoin = Callable[..., JoinRun]


class Heard:
    """What the service told its reporter, in order."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.statuses: list[JoinStatus] = []
        self.showing = False
        self.showing_while_running: list[bool] = []

    @contextmanager
    def showing_status(self) -> Iterator[None]:
        self.showing = True
        try:
            yield
        finally:
            self.showing = False

    def reporter(self) -> JoinReporter:
        return JoinReporter(
            say=self.messages.append,
            warn=lambda message: self.messages.append(f"warning: {message}"),
            on_status=self.statuses.append,
            showing_status=self.showing_status(),
        )


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(join_service, "start_flink_gateway", lambda: None)
    return load_settings(topics={"examples": "ex"})


def _status(state: str = "RUNNING") -> JoinStatus:
    return JoinStatus("0123456789abcdef", state, Path("chk-7"), 12, 3.0)


def _fake_join(heard: Heard, final_state: str, *, wait_for_stop: bool) -> RunJoin:
    def run_join(
        settings: Settings,
        stop: threading.Event,
        *,
        on_status: Callable[[JoinStatus], None],
        restore: bool,
    ) -> JoinRun:
        heard.showing_while_running.append(heard.showing)
        on_status(_status())
        if wait_for_stop:
            assert stop.wait(timeout=5)
        return JoinRun(Path("chk-7"), final_state, "/savepoints/sp-1" if wait_for_stop else None)

    return run_join


def test_the_job_status_feeds_the_gauges_and_the_reporter(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard, stop, registry = Heard(), threading.Event(), CollectorRegistry()
    stop.set()
    fake = _fake_join(heard, "STOPPED_WITH_SAVEPOINT", wait_for_stop=True)
    monkeypatch.setattr(join_runner, "run_join", fake)
    ended = run_join_service(
        settings, metrics=False, stop=stop, registry=registry, reporter=heard.reporter()
    )
    assert registry.get_sample_value("feedrank_join_job_running") == 1
    assert registry.get_sample_value("feedrank_join_last_checkpoint") == 12
    assert registry.get_sample_value("feedrank_join_last_checkpoint_age_seconds") == 3.0
    assert heard.statuses == [_status()]
    assert heard.showing_while_running == [True]
    assert not heard.showing
    [banner] = heard.messages
    assert banner.startswith("join: feedrank.decisions ⋈ feedrank.rewards → ex ")
    assert f"{settings.join.engine} engine on the embedded mini-cluster" in banner
    assert ended.run.savepoint == "/savepoints/sp-1"
    assert ended.stopped
    assert not ended.ended_by_itself


def test_a_job_that_fails_by_itself_is_told_apart_from_a_stop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard = Heard()
    monkeypatch.setattr(join_runner, "run_join", _fake_join(heard, "FAILED", wait_for_stop=False))
    ended = run_join_service(
        settings, metrics=False, stop=threading.Event(), reporter=heard.reporter()
    )
    assert ended.run.final_state == "FAILED"
    assert not ended.stopped
    assert ended.ended_by_itself


def test_the_exporter_serves_beside_the_job_and_a_failed_job_still_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard, stop = Heard(), threading.Event()
    served: list[CollectorRegistry] = []

    def serve_metrics(
        settings: Settings, stop_event: threading.Event, registry: CollectorRegistry
    ) -> None:
        served.append(registry)
        stop_event.wait()

    def run_join(
        settings: Settings,
        stop: threading.Event,
        *,
        on_status: Callable[[JoinStatus], None],
        restore: bool,
    ) -> JoinRun:
        on_status(_status("FAILED"))
        return JoinRun(None, "FAILED", None)

    monkeypatch.setattr(metrics_exporter, "serve_metrics", serve_metrics)
    monkeypatch.setattr(join_runner, "run_join", run_join)
    registry = CollectorRegistry()
    ended = run_join_service(settings, stop=stop, registry=registry, reporter=heard.reporter())
    ports = settings.ports
    assert heard.messages[0] == (
        f"metrics on http://{ports.bind_host}:{ports.streaming_metrics}/metrics"
    )
    assert heard.messages[1].startswith("join: ")
    assert served == [registry]
    assert registry.get_sample_value("feedrank_join_job_running") == 0
    # The service stops the exporter once the job is over; a job that failed on its
    # own still says so (feedrank join exits 1), the exporter's stop does not hide it.
    assert not ended.stopped
    assert ended.ended_by_itself
    assert not any(thread.name == "metrics-exporter" for thread in threading.enumerate())


def test_a_failed_exporter_is_reported_and_stops_the_join(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard, stop = Heard(), threading.Event()

    def serve_metrics(
        settings: Settings, stop_event: threading.Event, registry: CollectorRegistry
    ) -> None:
        raise OSError("address already in use")

    monkeypatch.setattr(metrics_exporter, "serve_metrics", serve_metrics)
    monkeypatch.setattr(
        join_runner, "run_join", _fake_join(heard, "STOPPED_WITH_SAVEPOINT", wait_for_stop=True)
    )
    ended = run_join_service(settings, stop=stop, reporter=heard.reporter())
    assert "warning: metrics exporter failed: address already in use; stopping" in heard.messages
    assert ended.stopped
    assert ended.run.final_state == "STOPPED_WITH_SAVEPOINT"
