"""Catalogue rows to events: posts, users and graph edges out of CSV, JSON lines or Parquet.

Transport-neutral: rows come from :mod:`feedrank.client.catalogue_files`, events leave
through whatever the caller does with them (``feedrank catalogue load`` produces them
with :class:`~feedrank.client.events.EventProducer`). The columns are the JSON fields of
the contract (docs/contracts.md):

- posts: ``post_id, creator_id, created_ms, language, country, topics, topic_weights,
  sensitive, embedding, features, ts_ms, op`` (op ``upsert`` by default);
- users: ``user_id, language, country, age_bucket, features, ts_ms, op``;
- graph: ``op, user_id, target_id, ts_ms``.

``ts_ms`` defaults to the clock's now; times are integer ms since the epoch or ISO 8601
texts with a time zone. In CSV, ``topics`` and ``topic_weights`` are ``|``-separated
lists and ``embedding`` a space- or comma-separated list of numbers (JSON lines and
Parquet carry real lists). Any other column of a post or user is a feature: a number
when the cell is one, else a text; empty cells are skipped. A bad row becomes a
:class:`RowError` naming its line and the field at fault; the rows around it still load.

Example::

    with open_rows(Path("posts.csv")) as source:
        for result in catalogue_events(source, "posts", clock=lambda: now_ms):
            if isinstance(result, RowError):
                print(f"line {result.line}: {result.field}: {result.message}")
            else:
                producer.produce_post(result.event)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from feedrank.client import catalogue_cells as parse
from feedrank.client import entities
from feedrank.client.catalogue_files import CatalogueFileError, RowSource, SourceRow
from feedrank.client.errors import InvalidEvent
from feedrank.core.entity_codecs import CatalogueEvent

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "CatalogueKind",
    "LoadedRow",
    "RowError",
    "catalogue_events",
    "row_event",
]

CatalogueKind = Literal["posts", "users", "graph"]
COLUMNS: dict[CatalogueKind, frozenset[str]] = {
    "posts": frozenset(
        {
            *("op", "post_id", "creator_id", "created_ms", "language", "country", "topics"),
            *("topic_weights", "sensitive", "embedding", "features", "ts_ms"),
        }
    ),
    "users": frozenset({"op", "user_id", "language", "country", "age_bucket", "features", "ts_ms"}),
    "graph": frozenset({"op", "user_id", "target_id", "ts_ms"}),
}
"""The columns each kind knows; other columns of posts and users are features."""
REQUIRED_COLUMNS: dict[CatalogueKind, tuple[str, ...]] = {
    "posts": ("post_id",),
    "users": ("user_id",),
    "graph": ("op", "user_id", "target_id"),
}
"""Columns a CSV or Parquet file must have (checked on its header)."""


@dataclass(frozen=True)
class LoadedRow:
    """A good row and the validated event it became."""

    line: int
    event: CatalogueEvent


@dataclass(frozen=True)
class RowError:
    """A bad row: its line number, the field (column) at fault when known, and why."""

    line: int
    field: str | None
    message: str


def catalogue_events(
    source: RowSource, kind: CatalogueKind, *, clock: Callable[[], int]
) -> Iterator[LoadedRow | RowError]:
    """Each row of ``source`` as a validated event of ``kind``, or the error that stops it.

    Raises :class:`CatalogueFileError` at once (before any row is read) when the file's
    header lacks a required column or, for the graph, has a column it does not know.
    """
    check_columns(source.columns, kind)
    return _converted(source, kind, clock)


def _converted(
    source: RowSource, kind: CatalogueKind, clock: Callable[[], int]
) -> Iterator[LoadedRow | RowError]:
    typed = source.format != "csv"
    for row in source:
        yield _convert(row, kind, clock, typed=typed)


def check_columns(columns: tuple[str, ...] | None, kind: CatalogueKind) -> None:
    """Refuse a header that misses a required column of ``kind`` (None: no header)."""
    if columns is None:
        return
    missing = [name for name in REQUIRED_COLUMNS[kind] if name not in columns]
    if missing:
        raise CatalogueFileError(
            f"missing required columns {missing} for {kind} (columns known: "
            f"{', '.join(sorted(COLUMNS[kind]))})"
        )
    if kind == "graph" and (unknown := sorted(set(columns) - COLUMNS["graph"])):
        raise CatalogueFileError(
            f"unknown graph columns {unknown}; graph rows have only "
            f"{', '.join(sorted(COLUMNS['graph']))}"
        )


def row_event(
    cells: Mapping[str, object], kind: CatalogueKind, *, now_ms: int, typed: bool = False
) -> CatalogueEvent:
    """The validated event one row describes; :class:`InvalidEvent` names the bad field.

    ``typed`` says the cells carry real types (JSON lines, Parquet): a text feature then
    stays a text even when it reads as a number. ``now_ms`` is the default ``ts_ms``.
    """
    present = {name: value for name, value in cells.items() if not parse.is_missing(value)}
    ts_ms = parse.epoch_ms(present, "ts_ms") if "ts_ms" in present else now_ms
    if kind == "graph":
        unknown = sorted(set(present) - COLUMNS["graph"])
        if unknown:
            raise InvalidEvent(unknown[0], f"graph rows have only {sorted(COLUMNS['graph'])}")
        return entities.graph_event(
            parse.text(present, "op"),
            parse.text(present, "user_id"),
            parse.text(present, "target_id"),
            ts_ms=ts_ms,
        )
    id_field = "post_id" if kind == "posts" else "user_id"
    entity_id = parse.text(present, id_field)
    if _op(present) == "delete":
        extra = sorted(set(present) - {"op", id_field, "ts_ms"})
        if extra:
            raise InvalidEvent(
                extra[0], f"a delete carries only {id_field} and ts_ms; this row also sets {extra}"
            )
        if kind == "posts":
            return entities.post_delete(entity_id, ts_ms=ts_ms)
        return entities.user_delete(entity_id, ts_ms=ts_ms)
    features = parse.features(present, COLUMNS[kind], typed=typed)
    if kind == "users":
        return entities.user_upsert(
            entity_id,
            language=parse.optional_text(present, "language"),
            country=parse.optional_text(present, "country"),
            age_bucket=parse.optional_text(present, "age_bucket"),
            features=features,
            ts_ms=ts_ms,
        )
    topics, weights = parse.topics(present)
    return entities.post_upsert(
        entity_id,
        creator_id=parse.text(present, "creator_id"),
        created_ms=parse.epoch_ms(present, "created_ms"),
        language=parse.text(present, "language").strip(),
        country=parse.optional_text(present, "country"),
        topics=topics,
        topic_weights=weights,
        sensitive=parse.flag(present, "sensitive"),
        embedding=parse.numbers(present.get("embedding"), "embedding", r"[,\s]+"),
        features=features,
        ts_ms=ts_ms,
    )


def _convert(
    row: SourceRow, kind: CatalogueKind, clock: Callable[[], int], *, typed: bool
) -> LoadedRow | RowError:
    if row.problem is not None:
        return RowError(row.line, row.field, row.problem)
    try:
        return LoadedRow(row.line, row_event(row.cells, kind, now_ms=clock(), typed=typed))
    except InvalidEvent as error:
        return RowError(row.line, error.field, error.message)


def _op(present: Mapping[str, object]) -> str:
    op = parse.text(present, "op").strip().lower() if "op" in present else "upsert"
    if op not in entities.ENTITY_OPS:
        raise InvalidEvent(
            "op", f"unknown op {op!r}; expected one of {sorted(entities.ENTITY_OPS)}"
        )
    return op
