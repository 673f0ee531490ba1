"""``feedrank join``: the streaming join on the embedded Flink mini-cluster, until stopped.

Decisions ⋈ rewards → labelled examples (and dead letters, and the window aggregates),
exactly once, restored from the newest retained checkpoint or savepoint. Ctrl-C or
SIGTERM stops it with a savepoint. The window aggregates and the job's state are
served to Prometheus on ``ports.streaming_metrics``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from feedrank.cli.context import settings_of
from feedrank.core.settings import Settings
from feedrank.stack.flink import use_own_log_dir

if TYPE_CHECKING:
    from feedrank.streaming.join_runner import JoinStatus

console = Console(soft_wrap=True)
# Without a terminal (logs, `feedrank up`), the status line is printed this often.
LOG_STATUS_EVERY_S = 30.0


def join(
    context: typer.Context,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Ignore retained checkpoints and savepoints: start from the topics' "
            "earliest offsets with empty state.",
        ),
    ] = False,
    metrics: Annotated[
        bool,
        typer.Option(help="Serve window aggregates and job state on ports.streaming_metrics."),
    ] = True,
) -> None:
    """Join decisions with rewards into labelled examples until Ctrl-C or SIGTERM."""
    settings = settings_of(context)
    use_own_log_dir(settings)  # the job's JVM logs: <log_dir>/flink/
    # A parent that ran PyFlink jobs in-process (e.g. a test runner) leaves this set for
    # its Python workers; this command is a client of its own and must start a gateway.
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    _start_gateway_ignoring_sigterm()
    # Imported only now: importing PyFlink's job modules is slow, and --help should not be.
    from feedrank.streaming.join_runner import run_join  # noqa: PLC0415
    from feedrank.streaming.metrics_exporter import JobGauges  # noqa: PLC0415

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    registry = CollectorRegistry()
    gauges = JobGauges(registry)
    exporter = _start_exporter(settings, stop, registry) if metrics else None
    topics = settings.topics
    console.print(
        f"join: {topics.decisions} ⋈ {topics.rewards} → {topics.examples} "
        f"(dead letters {topics.dlq}, aggregates {topics.metrics}); reward window "
        f"{settings.time.reward_window}, checkpoints every {settings.flink.checkpoint_interval_s}s"
    )
    line = _StatusLine()

    def show(status: JoinStatus) -> None:
        gauges.update(
            status.state == "RUNNING", status.last_checkpoint, status.last_checkpoint_age_s
        )
        line.show(status)

    with line:
        run = run_join(settings, stop, on_status=show, restore=not fresh)
    if exporter is not None:
        stop.set()
        exporter.join(timeout=5)
    if run.final_state in {"FAILED", "CANCELED", "SUSPENDED", "FINISHED"} and not stop.is_set():
        console.print(f"[red]the join job ended: {run.final_state}[/]")
        raise typer.Exit(1)
    where = f"; savepoint {run.savepoint}" if run.savepoint else ""
    console.print(f"join stopped ({run.final_state}){where}")


def _start_gateway_ignoring_sigterm() -> None:
    """Start PyFlink's JVM with SIGTERM ignored, so a SIGTERM to our process group
    (``feedrank down``) reaches only this process, which then stops the job with a
    savepoint; a JVM started with a shutdown signal ignored never installs its handler.
    The JVM still exits with this process (it watches its stdin pipe).
    """
    from pyflink.java_gateway import get_gateway  # noqa: PLC0415 - slow import

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        get_gateway()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_exporter(
    settings: Settings, stop: threading.Event, registry: CollectorRegistry
) -> threading.Thread:
    from feedrank.streaming.metrics_exporter import serve_metrics  # noqa: PLC0415

    def run() -> None:
        try:
            serve_metrics(settings, stop, registry)
        except Exception as error:  # noqa: BLE001 - report, then stop the join too
            console.print(f"[red]metrics exporter failed: {error}; stopping[/]")
            stop.set()

    thread = threading.Thread(target=run, name="metrics-exporter", daemon=True)
    thread.start()
    console.print(
        f"metrics on http://{settings.ports.bind_host}:{settings.ports.streaming_metrics}/metrics"
    )
    return thread


class _StatusLine:
    """A live status line on a terminal; otherwise a printed line on change or every 30 s."""

    def __init__(self) -> None:
        self._live = console.status("join: submitting…") if console.is_terminal else None
        self._last_state = ""
        self._last_print = 0.0

    def __enter__(self) -> _StatusLine:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def show(self, status: JoinStatus) -> None:
        text = describe(status)
        if self._live is not None:
            self._live.update(text)
            return
        state = status.state
        now = time.monotonic()
        if state != self._last_state or now - self._last_print >= LOG_STATUS_EVERY_S:
            console.print(text, highlight=False)
            self._last_state, self._last_print = state, now


def describe(status: JoinStatus) -> str:
    """``join RUNNING · job 1a2b3c4d · checkpoint 12 (3s ago) · restored from chk-7``."""
    parts = [f"join {status.state}", f"job {status.job_id[:8]}"]
    age = status.last_checkpoint_age_s
    if age is None:
        parts.append("no checkpoint yet")
    else:
        parts.append(f"checkpoint {status.last_checkpoint} ({age:.0f}s ago)")
    restored = status.restored_from
    parts.append(f"restored from {restored.name}" if restored is not None else "fresh state")
    return " · ".join(parts)


def register(app: typer.Typer) -> None:
    app.command()(join)
