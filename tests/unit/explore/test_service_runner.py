"""The explore service's run: what it says while it starts, how its workers are set up,
and how it stops (on request, or when a worker exits). The catalogue replay and the
worker pool are stand-ins: no broker and no forked worker."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import values

from feedrank.catalogue.kafka_feed import FeedStatus
from feedrank.catalogue.replay import ReplayedCatalogue
from feedrank.core.clock import Clock
from feedrank.core.reporting import Reporter
from feedrank.core.settings import ExploreSettings, Settings
from feedrank.explore import service_runner
from feedrank.explore.multiprocess_metrics import MULTIPROC_ENV, prepare_multiprocess_metrics
from feedrank.explore.service_runner import (
    STOPPED,
    WORKER_EXITED,
    models_followed,
    run_explore_service,
)
from feedrank.explore.workers import BackendFactory, PoolConfig
from feedrank.simulate.world.catalogue import catalogue_from_world
from tests.support.model_versions import small_world

START_MS = 1_764_000_000_000


class FakePool:
    """Stands in for the WorkerPool: records what it was given and what was done to it."""

    made: list[FakePool] = []  # noqa: RUF012 - the pools a test made, newest last

    def __init__(
        self,
        make_backend: BackendFactory,
        settings: ExploreSettings,
        clock: Clock,
        config: PoolConfig,
    ) -> None:
        self.config = config
        self.events: list[str] = []
        self.workers_alive = True
        FakePool.made.append(self)

    def start(self) -> None:
        self.events.append("started")

    def alive(self) -> bool:
        return self.workers_alive

    def stop(self) -> None:
        self.events.append("stopped")


class DyingPool(FakePool):
    """A pool whose workers have all exited once it started."""

    def alive(self) -> bool:
        return False


class Recorder:
    """A Reporter that keeps every message, warnings and spinners marked."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def reporter(self) -> Reporter:
        @contextmanager
        def working(message: str) -> Iterator[None]:
            self.lines.append(f"working: {message}")
            yield

        return Reporter(
            say=self.lines.append,
            warn=lambda message: self.lines.append(f"warning: {message}"),
            working=working,
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "explore": base.explore.model_copy(update={"deploy_address": None, "plan_file": None}),
            "paths": base.paths.model_copy(update={"state_dir": tmp_path / "state"}),
        }
    )


@pytest.fixture
def fake_pool(monkeypatch: pytest.MonkeyPatch) -> Callable[[], FakePool]:
    FakePool.made.clear()
    monkeypatch.setattr(service_runner, "WorkerPool", FakePool)
    return lambda: FakePool.made[-1]


@pytest.fixture(autouse=True)
def fake_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = catalogue_from_world(small_world(num_posts=400, num_users=40, start_ms=START_MS))

    def replay(
        settings: Settings, clock: Clock, progress: Callable[[int], None] | None = None
    ) -> ReplayedCatalogue:
        assert progress is not None
        for read in (50_000, 120_000, 150_000, 230_000):
            progress(read)
        return ReplayedCatalogue(catalogue, {("feedrank.posts", 0): 7}, 230_000, FeedStatus())

    monkeypatch.setattr(service_runner, "replay_catalogue", replay)


def test_a_stopped_service_says_what_it_did_and_stops_its_workers(
    settings: Settings, fake_pool: Callable[[], FakePool]
) -> None:
    recorder = Recorder()
    stop = threading.Event()
    stop.set()
    status = run_explore_service(
        settings,
        workers=3,
        grpc_port=50999,
        metrics_port=9199,
        stop=stop,
        reporter=recorder.reporter(),
    )
    assert status == STOPPED
    pool = fake_pool()
    assert pool.events == ["started", "stopped"]
    host = settings.ports.bind_host
    assert pool.config == PoolConfig(
        address=f"{host}:50999", workers=3, metrics_address=(host, 9199)
    )
    topics = settings.topics
    assert recorder.lines[:3] == [
        f"replaying the catalogue from {topics.posts}, {topics.users}, {topics.graph}…",
        "  120,000 catalogue records read",
        "  230,000 catalogue records read",
    ]
    assert recorder.lines[3].startswith("catalogue: ")
    assert recorder.lines[3].endswith(" users from 230,000 records (0 dead-lettered)")
    assert recorder.lines[4] == "working: embedding and indexing model over the catalogue…"
    assert recorder.lines[5].startswith(f"serving Ranking on {host}:50999 with 3 workers (model ")
    assert recorder.lines[5].endswith(
        f"; no serving plan configured); metrics on http://{host}:9199/metrics"
    )
    assert recorder.lines[6:] == ["explore service stopped"]


def test_the_ports_and_workers_default_to_the_settings(
    settings: Settings, fake_pool: Callable[[], FakePool]
) -> None:
    stop = threading.Event()
    stop.set()
    run_explore_service(settings, stop=stop, reporter=Recorder().reporter())
    ports = settings.ports
    assert fake_pool().config == PoolConfig(
        address=f"{ports.bind_host}:{ports.ranking_grpc}",
        workers=settings.explore.workers,
        metrics_address=(ports.bind_host, ports.explore_metrics),
    )


def test_a_worker_that_exits_stops_the_service(
    settings: Settings, fake_pool: Callable[[], FakePool], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(service_runner, "WorkerPool", DyingPool)
    status = run_explore_service(settings, stop=threading.Event(), reporter=recorder.reporter())
    assert status == WORKER_EXITED
    assert fake_pool().events == ["started", "stopped"]
    assert recorder.lines[-1] == "warning: a worker exited; stopping"


def test_the_start_up_message_says_where_models_come_from() -> None:
    assert models_followed(ExploreSettings(), "v7") == "model v7; no serving plan configured"
    assert (
        models_followed(ExploreSettings(plan_file=Path("plan.json")), "v7")
        == "models from the plan file plan.json"
    )
    assert (
        models_followed(ExploreSettings(deploy_address="deploy:50052"), "v7")
        == "models from Deploy.GetServingPlan at deploy:50052"
    )


def test_multiprocess_metrics_start_from_an_empty_folder(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    stale = settings.paths.state_dir / "prometheus" / "explore" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from the last run")
    directory = prepare_multiprocess_metrics(settings)
    assert directory == stale.parent
    assert list(directory.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(directory.resolve())
    assert values.ValueClass.__name__ == "MmapedValue"
