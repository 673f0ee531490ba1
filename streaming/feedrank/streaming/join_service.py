"""The join as ``feedrank join`` runs it: the job until it is stopped, its state as
gauges and, beside it, the metrics exporter.

On the embedded mini-cluster, :func:`run_join_service` starts PyFlink's JVM with SIGTERM
ignored (so a SIGTERM to the process group reaches only this process, which then stops
the job with a savepoint); on a session cluster it supervises the submitted job over
the REST API (:mod:`feedrank.streaming.cluster_join`). Either way it registers the
job's :class:`~feedrank.streaming.metrics_exporter.JobGauges` next to the window
aggregates, serves both on ``ports.streaming_metrics`` from a thread, and runs the join
until SIGINT, SIGTERM or ``stop``. PyFlink's modules are imported only once the gateway
runs: importing them is slow, and importing this module must not be.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from feedrank.core.settings import Settings

if TYPE_CHECKING:
    from feedrank.streaming.join_status import JoinRun, JoinStatus

log = logging.getLogger(__name__)

ENDED = frozenset({"FAILED", "CANCELED", "SUSPENDED", "FINISHED"})
"""Final states of a job that ended by itself, not by a planned stop."""
EXPORTER_JOIN_TIMEOUT_S = 5.0


def _ignore_status(status: JoinStatus) -> None:
    """Status nobody watches."""


@dataclass(frozen=True)
class JoinReporter:
    """Where the service's messages and the job's status go.

    ``say`` and ``warn`` take a finished message; ``on_status`` hears every status poll
    of the running job, and ``showing_status`` is held while the job runs (a live status
    line). By default messages go to the log and nothing else is shown.
    """

    say: Callable[[str], None] = log.info
    warn: Callable[[str], None] = log.warning
    on_status: Callable[[JoinStatus], None] = _ignore_status
    showing_status: AbstractContextManager[object] = field(default_factory=nullcontext)


@dataclass(frozen=True)
class JoinServiceRun:
    """How the service ended: the join's run, and whether a stop was asked for."""

    run: JoinRun
    stopped: bool  # ``stop`` was set while the job ran: a signal or a failed exporter

    @property
    def ended_by_itself(self) -> bool:
        """The job failed, was cancelled, suspended or finished without being asked to."""
        return self.run.final_state in ENDED and not self.stopped


def run_join_service(
    settings: Settings,
    *,
    restore: bool = True,
    metrics: bool = True,
    stop: threading.Event | None = None,
    registry: CollectorRegistry | None = None,
    reporter: JoinReporter | None = None,
    jobmanager: str | None = None,
) -> JoinServiceRun:
    """Serve the window aggregates and the job's gauges on ``ports.streaming_metrics``
    (with ``metrics``; collectors go on ``registry``) and run the join, restored from the
    newest retained snapshot with ``restore``, until ``stop`` is set (by default SIGINT and
    SIGTERM set it: call from the main thread) or the job ends.

    The join runs on the embedded mini-cluster (a Flink gateway of this process), or, with
    ``jobmanager`` (``HOST:PORT`` of a JobManager's REST API), as a job on that session
    cluster, resubmitted whenever it is lost (:mod:`feedrank.streaming.cluster_join`).
    """
    reporter = reporter or JoinReporter()
    if jobmanager is None:
        start_flink_gateway()
    from feedrank.streaming.metrics_exporter import JobGauges  # noqa: PLC0415

    if stop is None:
        stop = _stop_on_signals()
    registry = registry or CollectorRegistry()
    gauges = JobGauges(registry)
    exporter = start_metrics_exporter(settings, stop, registry, reporter) if metrics else None
    reporter.say(join_banner(settings, jobmanager))

    def show(status: JoinStatus) -> None:
        gauges.update(
            status.state == "RUNNING", status.last_checkpoint, status.last_checkpoint_age_s
        )
        reporter.on_status(status)

    try:
        with reporter.showing_status:
            run = _run(
                settings,
                jobmanager,
                stop,
                show=show,
                count_resubmission=gauges.resubmissions.inc,
                restore=restore,
                reporter=reporter,
            )
        # Read before the exporter is stopped (which sets ``stop``): a job that failed or
        # finished on its own must say so, not pass for one that was asked to stop.
        asked_to_stop = stop.is_set()
    finally:
        if exporter is not None:
            stop.set()
            exporter.join(timeout=EXPORTER_JOIN_TIMEOUT_S)
    return JoinServiceRun(run, stopped=asked_to_stop)


def _run(
    settings: Settings,
    jobmanager: str | None,
    stop: threading.Event,
    *,
    show: Callable[[JoinStatus], None],
    count_resubmission: Callable[[], None],
    restore: bool,
    reporter: JoinReporter,
) -> JoinRun:
    """The join on the mini-cluster, or on the session cluster at ``jobmanager``."""
    # Imported only now: importing PyFlink's job modules is slow.
    if jobmanager is None:
        from feedrank.streaming.join_runner import run_join  # noqa: PLC0415

        return run_join(settings, stop, on_status=show, restore=restore)
    from feedrank.streaming.cluster_join import run_cluster_join  # noqa: PLC0415

    return run_cluster_join(
        settings,
        jobmanager,
        stop,
        on_status=show,
        on_resubmit=count_resubmission,
        restore=restore,
        say=reporter.say,
        warn=reporter.warn,
    )


def start_flink_gateway() -> None:
    """Start PyFlink's JVM with SIGTERM ignored, so a SIGTERM to our process group
    (``feedrank down``) reaches only this process, which then stops the job with a
    savepoint; a JVM started with a shutdown signal ignored never installs its handler.
    The JVM still exits with this process (it watches its stdin pipe).
    """
    from feedrank.streaming.flink_environment import allow_own_gateway  # noqa: PLC0415 - slow

    allow_own_gateway()
    # PyFlink runs $JAVA_HOME/bin/java whenever JAVA_HOME is set, even when it is empty
    # or names no Java (then the join dies with "No such file: bin/java"): use PATH's.
    java_home = os.environ.get("JAVA_HOME")
    if java_home is not None and not (Path(java_home) / "bin" / "java").is_file():
        log.warning("JAVA_HOME=%r has no bin/java; using java from PATH", java_home)
        del os.environ["JAVA_HOME"]
    from pyflink.java_gateway import get_gateway  # noqa: PLC0415 - slow import

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        get_gateway()
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_metrics_exporter(
    settings: Settings,
    stop: threading.Event,
    registry: CollectorRegistry,
    reporter: JoinReporter,
) -> threading.Thread:
    """Serve ``registry`` and the window aggregates from a daemon thread until ``stop``;
    if the exporter fails, say so and set ``stop`` (the join stops with it)."""
    from feedrank.streaming.metrics_exporter import serve_metrics  # noqa: PLC0415

    def run() -> None:
        try:
            serve_metrics(settings, stop, registry)
        except Exception as error:  # noqa: BLE001 - report, then stop the join too
            reporter.warn(f"metrics exporter failed: {error}; stopping")
            stop.set()

    thread = threading.Thread(target=run, name="metrics-exporter", daemon=True)
    thread.start()
    ports = settings.ports
    reporter.say(f"metrics on http://{ports.bind_host}:{ports.streaming_metrics}/metrics")
    return thread


def join_banner(settings: Settings, jobmanager: str | None = None) -> str:
    """What the join reads and writes, its reward window and checkpoint interval, its
    engine and where it runs."""
    topics = settings.topics
    where = f"session cluster {jobmanager}" if jobmanager else "the embedded mini-cluster"
    return (
        f"join: {topics.decisions} ⋈ {topics.rewards} → {topics.examples} "
        f"(dead letters {topics.dlq}, aggregates {topics.metrics}); reward window "
        f"{settings.time.reward_window}, checkpoints every "
        f"{settings.flink.checkpoint_interval_s}s; {settings.join.engine} engine on {where}"
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
