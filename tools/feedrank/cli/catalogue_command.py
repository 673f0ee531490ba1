"""``feedrank catalogue load FILE``: posts, users or graph edges from CSV, JSON lines or
Parquet into the catalogue topics.

Rows stream from the file (:mod:`feedrank.client.catalogue_rows` turns each into a
validated event) and leave through the client's :class:`EventProducer`. Every bad row
is reported with its line number and the field at fault; the good rows load anyway.
Exit code 0 when every row loaded, 1 when some were skipped (or Kafka did not take them
all), 2 when the file cannot be read at all. Columns: docs/contracts.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

from feedrank.cli.context import settings_of
from feedrank.client import (
    CatalogueFileError,
    CatalogueKind,
    DeliveryFailed,
    EventProducer,
    FileFormat,
    LoadedRow,
    RowError,
    RowSource,
    TopicNames,
    catalogue_events,
    open_rows,
)
from feedrank.core.clock import SystemClock
from feedrank.core.kafka_clients import admin_config
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import Settings
from feedrank.stack.topics import entity_topics

console = Console()
error_console = Console(stderr=True)
app = typer.Typer(
    name="catalogue",
    help="The catalogue apps bring: posts, users and the social graph (Kafka topics).",
    no_args_is_help=True,
)

PLAIN_PROGRESS_EVERY = 10_000
"""Rows between two progress lines when stdout is not a terminal."""
DELIVERY_TIMEOUT_S = 60.0
"""How long a record may wait for Kafka before it counts as not delivered."""
_BAR_UPDATE_EVERY = 256


class Kind(StrEnum):
    """What the rows of a file are."""

    posts = "posts"
    users = "users"
    graph = "graph"


class Format(StrEnum):
    """How a file is written."""

    csv = "csv"
    parquet = "parquet"
    jsonl = "jsonl"


_KINDS: dict[Kind, tuple[CatalogueKind, str]] = {
    Kind.posts: ("posts", "posts"),
    Kind.users: ("users", "users"),
    Kind.graph: ("graph", "graph events"),
}
_FORMATS: dict[Format, FileFormat] = {
    Format.csv: "csv",
    Format.parquet: "parquet",
    Format.jsonl: "jsonl",
}


@dataclass
class LoadTally:
    """What a load did, row by row."""

    rows: int = 0
    loaded: int = 0
    skipped: int = 0


@app.command()
def load(
    context: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV, JSON-lines or Parquet file of rows.", dir_okay=False)
    ],
    *,
    kind: Annotated[Kind, typer.Option("--kind", help="What the rows are.")] = Kind.posts,
    file_format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="File format (default: from the suffix: .csv, .parquet, .jsonl/.json/.ndjson).",
        ),
    ] = None,
    create_topics: Annotated[
        bool,
        typer.Option(
            help="Create the catalogue topics (compacted, as `feedrank up` does) when missing."
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; produce nothing.")
    ] = False,
) -> None:
    """Load posts, users or graph edges from FILE into the catalogue topics.

    Columns are the contract's JSON fields; other columns of posts and users are
    features. In CSV, topics are '|'-separated and an embedding is one cell of numbers.
    Exit 0: every row loaded; 1: some rows skipped; 2: the file cannot be read.
    """
    settings = settings_of(context)
    started = time.monotonic()
    clock = SystemClock()
    try:
        source = open_rows(file, _FORMATS[file_format] if file_format else None)
    except CatalogueFileError as error:
        _cannot_read(file, error)
    with source:
        try:
            results = catalogue_events(source, _KINDS[kind][0], clock=clock.now_ms)
        except CatalogueFileError as error:
            _cannot_read(file, error)
        producer = None if dry_run else _producer(settings, create_topics)
        try:
            tally = _load(source, results, producer)
        except CatalogueFileError as error:
            _flush(producer)
            _cannot_read(file, error)
    delivered = _flush(producer)
    loaded = tally.loaded if producer is None else producer.delivered
    verb = "checked" if dry_run else "loaded"
    console.print(
        f"{verb} {loaded:,} {_KINDS[kind][1]}, skipped {tally.skipped:,} bad rows "
        f"({time.monotonic() - started:.1f} s)"
    )
    if tally.skipped or not delivered:
        raise typer.Exit(1)


def _cannot_read(file: Path, error: CatalogueFileError) -> NoReturn:
    error_console.print(f"[red]cannot load {escape(str(file))}:[/] {escape(str(error))}")
    raise typer.Exit(2) from error


def _producer(settings: Settings, create_topics: bool) -> EventProducer:
    topics = settings.topics
    bootstrap = settings.kafka.access
    if create_topics:
        try:
            admin = AdminClient(admin_config(bootstrap, log_level=None))
            ensure_topics(admin, entity_topics(topics))
        except KafkaException as error:
            error_console.print(f"[red]Kafka at {bootstrap} failed:[/] {escape(str(error))}")
            raise typer.Exit(1) from error
    names = TopicNames(
        posts=topics.posts, users=topics.users, graph=topics.graph, rewards=topics.rewards
    )
    return EventProducer(
        bootstrap,
        topics=names,
        clock=SystemClock().now_ms,
        producer_config={"message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000)},
    )


def _load(
    source: RowSource, results: Iterator[LoadedRow | RowError], producer: EventProducer | None
) -> LoadTally:
    tally = LoadTally()
    if not console.is_terminal:
        for result in results:
            _take(result, producer, tally)
            if tally.rows % PLAIN_PROGRESS_EVERY == 0:
                console.print(
                    f"read {tally.rows:,} rows: {tally.loaded:,} loaded, {tally.skipped:,} skipped",
                    soft_wrap=True,
                )
        return tally
    size_column = DownloadColumn() if source.unit == "bytes" else TextColumn("")
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), size_column)
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"loading {source.path.name}", total=source.total)
        for result in results:
            _take(result, producer, tally)
            if tally.rows % _BAR_UPDATE_EVERY == 0:
                progress.update(task, completed=source.done)
        progress.update(task, completed=source.total)
    return tally


def _take(result: LoadedRow | RowError, producer: EventProducer | None, tally: LoadTally) -> None:
    tally.rows += 1
    if isinstance(result, RowError):
        tally.skipped += 1
        field = f" {result.field}:" if result.field else ""
        error_console.print(
            f"line {result.line}:{field} {result.message}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        return
    if producer is not None:
        producer.produce(result.event)
    tally.loaded += 1


def _flush(producer: EventProducer | None) -> bool:
    """Wait for Kafka; False (and the reason printed) when records were lost."""
    if producer is None:
        return True
    try:
        producer.flush(DELIVERY_TIMEOUT_S + 30.0)
    except DeliveryFailed as error:
        error_console.print(f"[red]not delivered:[/] {escape(str(error))}")
        return False
    return True


def register(parent: typer.Typer) -> None:
    """Add ``feedrank catalogue …`` to the command line."""
    parent.add_typer(app)
