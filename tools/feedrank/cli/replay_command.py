"""``feedrank replay FILE``: logged bandit feedback (CSV or Parquet) into Kafka as decisions
and rewards. Bad rows are reported with their line numbers and skipped; the good ones
are loaded. Format: docs/replay-and-evaluation.md."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from feedrank.cli.context import settings_of
from feedrank.core.kafka_clients import KafkaAccess
from feedrank.learners.replay import (
    DeliveryReport,
    ReplayFormatError,
    ReplayLog,
    ReplayProducer,
    ReplayTopics,
    ensure_replay_topics,
    read_replay,
)
from feedrank.learners.replay.producer import SENDING, publish_replay

console = Console()
error_console = Console(stderr=True)


class ReplayFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


def replay(
    context: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet file of logged feedback.", dir_okay=False)
    ],
    *,
    file_format: Annotated[
        ReplayFormat | None,
        typer.Option("--format", help="File format (default: from the suffix)."),
    ] = None,
    topic_prefix: Annotated[
        str | None,
        typer.Option(
            help="Produce to <prefix>decisions and <prefix>rewards instead of the "
            "configured topics (topics.decisions, topics.rewards)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and summarise only; produce nothing.")
    ] = False,
    show_errors: Annotated[
        int, typer.Option(help="How many bad rows to list (all are counted).", min=0)
    ] = 20,
) -> None:
    """Replay logged decisions and rewards from FILE into Kafka."""
    settings = settings_of(context)
    started = time.monotonic()
    try:
        with console.status(f"reading {file.name}…"):
            log = read_replay(file, file_format.value if file_format else None)
    except ReplayFormatError as error:
        error_console.print(f"[red]cannot replay {file}:[/] {error}")
        raise typer.Exit(2) from error
    _print_errors(log, show_errors)
    topics = ReplayTopics.from_settings(settings.topics, topic_prefix)
    report = DeliveryReport()
    if not dry_run and log.decisions:
        try:
            ensure_replay_topics(settings.kafka.access, topics, settings.topics)
            report = _produce(log, settings.kafka.access, topics)
        except KafkaException as error:
            error_console.print(f"[red]Kafka at {settings.kafka.bootstrap} failed:[/] {error}")
            raise typer.Exit(1) from error
    _print_summary(log, report, topics, dry_run, time.monotonic() - started)
    if not log.decisions or report.failed:
        raise typer.Exit(1)


def _produce(log: ReplayLog, bootstrap: KafkaAccess, topics: ReplayTopics) -> DeliveryReport:
    producer = ReplayProducer(bootstrap, topics)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(SENDING, total=len(log.decisions))

        def show(stage: str, sent: int) -> None:
            progress.update(task, description=stage, completed=sent)

        return publish_replay(log, producer, show)


def _print_errors(log: ReplayLog, limit: int) -> None:
    if not log.errors or limit == 0:
        return
    table = Table(title=f"rejected rows ({len(log.errors)})", title_justify="left")
    table.add_column("line", justify="right")
    table.add_column("column")
    table.add_column("problem")
    for error in log.errors[:limit]:
        table.add_row(str(error.line), error.column or "", error.message)
    if len(log.errors) > limit:
        table.add_row("…", "", f"{len(log.errors) - limit} more")
    error_console.print(table)


def _print_summary(
    log: ReplayLog, report: DeliveryReport, topics: ReplayTopics, dry_run: bool, seconds: float
) -> None:
    table = Table(title=f"replay of {log.path.name}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rewards = sum(1 for row in log.rows if row.reward > 0)
    table.add_row("rows read", f"{log.total_rows:,}")
    table.add_row("rows loaded", f"{log.loaded_rows:,}")
    table.add_row("rows rejected", f"{len(log.errors):,}")
    table.add_row("decisions", f"{len(log.decisions):,}")
    table.add_row("rewards (rows with reward > 0)", f"{rewards:,}")
    if dry_run:
        table.add_row("produced", "nothing (--dry-run)")
    else:
        table.add_row(f"decisions acknowledged ({topics.decisions})", f"{report.decisions:,}")
        table.add_row(f"rewards acknowledged ({topics.rewards})", f"{report.rewards:,}")
        table.add_row("delivery failures", f"{report.failed:,}")
    table.add_row("seconds", f"{seconds:.1f}")
    console.print(table)
    for message in report.errors:
        error_console.print(f"[red]delivery error:[/] {message}")


def register(app: typer.Typer) -> None:
    app.command()(replay)
