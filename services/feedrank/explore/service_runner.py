"""The explore service as ``feedrank serve`` runs it: set up from the settings and run
until it is stopped.

The catalogue is replayed from its topics (``catalogue_source``) and the initial model
built over it: the serving plan's main arm when a plan is configured and that version
loads, else the cold-start policy (``app.build_serving_state``). The worker processes
fork from that state and serve Rank on one port, their metrics aggregated on one
``/metrics`` (``workers``); the parent watches them until SIGINT, SIGTERM or ``stop``,
or until a worker exits, then stops them all.

Importing this module imports prometheus_client: with the workers' metrics aggregated,
call :func:`feedrank.explore.multiprocess_metrics.prepare_multiprocess_metrics` first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from feedrank.catalogue.replay import ReplayedCatalogue
from feedrank.core.clock import Clock, SystemClock
from feedrank.core.grpc_tls import check_plaintext_bind
from feedrank.core.reporting import Reporter
from feedrank.core.settings import ExploreSettings, Settings
from feedrank.explore.app import (
    ServingState,
    build_serving_state,
    main_arm_version,
    worker_backend_factory,
)
from feedrank.explore.catalogue_source import replay_catalogue
from feedrank.explore.plan_sources import first_plan
from feedrank.explore.workers import PoolConfig, WorkerPool

log = logging.getLogger(__name__)

STOPPED = 0  # stopped on request (a signal or ``stop``)
WORKER_EXITED = 1  # a worker process exited on its own: the service stopped the others
REPLAY_PROGRESS_EVERY = 100_000  # catalogue records between two progress messages


def run_explore_service(
    settings: Settings,
    *,
    workers: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    log_decisions: bool = True,
    stop: threading.Event | None = None,
    reporter: Reporter | None = None,
) -> int:
    """Replay the catalogue, build the serving state, fork ``workers`` processes serving
    Rank on ``grpc_port`` with their metrics on ``metrics_port`` (by default
    ``explore.workers``, ``ports.ranking_grpc`` and ``ports.explore_metrics``), and watch
    them until ``stop`` is set (by default SIGINT and SIGTERM set it: call from the main
    thread). Returns :data:`STOPPED`, or :data:`WORKER_EXITED` when a worker exited."""
    reporter = reporter or Reporter.logging_to(log)
    ports = settings.ports
    grpc_port = grpc_port or ports.ranking_grpc
    metrics_port = metrics_port or ports.explore_metrics
    worker_count = workers or settings.explore.workers
    # Before the catalogue replay: a refused plaintext bind should not wait minutes.
    check_plaintext_bind(f"{ports.bind_host}:{grpc_port}", settings.tls, "Ranking")
    clock = SystemClock()
    state = _serving_state(
        settings, clock, _replayed_catalogue(settings, clock, reporter), reporter
    )
    pool = WorkerPool(
        worker_backend_factory(settings, clock, state, log_decisions=log_decisions),
        settings.explore,
        clock,
        PoolConfig(
            address=f"{ports.bind_host}:{grpc_port}",
            workers=worker_count,
            metrics_address=(ports.bind_host, metrics_port),
            tls=settings.tls,
        ),
    )
    if stop is None:
        stop = _stop_on_signals()
    pool.start()
    reporter.say(
        f"serving Ranking on {ports.bind_host}:{grpc_port} with {worker_count} "
        f"workers ({models_followed(settings.explore, state.model.version)}); "
        f"metrics on http://{ports.bind_host}:{metrics_port}/metrics"
    )
    return _watch(pool, stop, reporter)


def _replayed_catalogue(settings: Settings, clock: Clock, reporter: Reporter) -> ReplayedCatalogue:
    topics = settings.topics
    reporter.say(f"replaying the catalogue from {topics.posts}, {topics.users}, {topics.graph}…")
    replayed = replay_catalogue(settings, clock, progress=replay_progress(reporter.say))
    reporter.say(
        f"catalogue: {replayed.state.live_rows().size:,} posts, {replayed.state.num_users:,} "
        f"users from {replayed.records:,} records ({replayed.rejected:,} dead-lettered)"
    )
    return replayed


def _serving_state(
    settings: Settings, clock: Clock, replayed: ReplayedCatalogue, reporter: Reporter
) -> ServingState:
    version = main_arm_version(first_plan(settings.explore, tls=settings.tls))
    doing = f"loading {version}, the serving plan's" if version else "embedding and indexing"
    with reporter.working(f"{doing} model over the catalogue…"):
        return build_serving_state(
            settings,
            clock,
            replayed.state,
            positions=replayed.positions,
            show_progress=False,
            initial_version=version,
        )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _watch(pool: WorkerPool, stop: threading.Event, reporter: Reporter) -> int:
    """Check every second that every worker lives until ``stop``; stop them all after."""
    try:
        while not stop.wait(timeout=1.0):
            if not pool.alive():
                reporter.warn("a worker exited; stopping")
                return WORKER_EXITED
    finally:
        pool.stop()
    reporter.say("explore service stopped")
    return STOPPED


def replay_progress(say: Callable[[str], None]) -> Callable[[int], None]:
    """A replay's progress callback: says the records read every 100,000."""
    said = [0]

    def progress(read: int) -> None:
        if read >= said[0] + REPLAY_PROGRESS_EVERY:
            said[0] = read - read % REPLAY_PROGRESS_EVERY
            say(f"  {read:,} catalogue records read")

    return progress


def models_followed(explore: ExploreSettings, initial_version: str) -> str:
    """Where the workers' models come from, as the start-up message says it."""
    if explore.deploy_address:
        return f"models from Deploy.GetServingPlan at {explore.deploy_address}"
    if explore.plan_file is not None:
        return f"models from the plan file {explore.plan_file}"
    return f"model {initial_version}; no serving plan configured"
