"""``feedrank join``: the streaming join, on the embedded Flink mini-cluster or as a job on
a Flink session cluster (``--jobmanager``), until stopped.

Decisions ⋈ rewards → labelled examples (and dead letters, and the window aggregates),
exactly once, restored from the newest retained checkpoint or savepoint. Ctrl-C or
SIGTERM stops it with a savepoint. The window aggregates and the job's state are
served to Prometheus on ``ports.streaming_metrics``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from feedrank.cli.context import settings_of
from feedrank.stack.flink import use_own_log_dir
from feedrank.streaming.cluster_join import ClusterJoinError, jobmanager_address
from feedrank.streaming.join_service import JoinReporter, run_join_service

if TYPE_CHECKING:
    from feedrank.streaming.join_status import JoinStatus

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
    jobmanager: Annotated[
        str | None,
        typer.Option(
            "--jobmanager",
            metavar="HOST:PORT",
            help="Run the join as a job on the Flink session cluster whose REST API is "
            "here (`flink run join_main.py`), resubmitted from the newest retained "
            "checkpoint whenever the cluster loses it. Default: the embedded mini-cluster, "
            "or the local stack's JobManager in the cluster topology "
            "(cluster.topology=cluster).",
        ),
    ] = None,
) -> None:
    """Join decisions with rewards into labelled examples until Ctrl-C or SIGTERM."""
    settings = settings_of(context)
    use_own_log_dir(settings)  # the job's (or flink run's) JVM logs: <log_dir>/flink/
    line = _StatusLine()
    reporter = JoinReporter(
        say=console.print, warn=_in_red, on_status=line.show, showing_status=line
    )
    try:
        ended = run_join_service(
            settings,
            restore=not fresh,
            metrics=metrics,
            reporter=reporter,
            jobmanager=jobmanager_address(settings, jobmanager),
        )
    except ClusterJoinError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    run = ended.run
    if ended.ended_by_itself:
        console.print(f"[red]the join job ended: {run.final_state}[/]")
        raise typer.Exit(1)
    where = f"; savepoint {run.savepoint}" if run.savepoint else ""
    console.print(f"join stopped ({run.final_state}){where}")


def _in_red(message: str) -> None:
    console.print(f"[red]{message}[/]")


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
