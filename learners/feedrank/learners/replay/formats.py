"""Reading replay files: CSV and Parquet into records of raw cells, with line numbers.

Only the file format lives here; what a cell means is :mod:`.rows`' job. A file whose
header is unusable (a required column missing, a duplicate name) raises
:class:`ReplayFormatError`; a single bad row never does.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from feedrank.learners.replay import columns
from feedrank.learners.replay.rows import Cell, FeatureColumns, is_number_text

FileFormat = Literal["csv", "parquet"]
FORMAT_OF_SUFFIX: dict[str, FileFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_DIGEST_CHUNK = 1 << 20


class ReplayFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, missing columns, not a table)."""


@dataclass(frozen=True)
class RawRecord:
    line: int
    cells: Mapping[str, Cell]
    problem: str | None = None  # set when the row's shape is broken (e.g. too many fields)


@dataclass(frozen=True)
class RawTable:
    """A replay file's header, records and feature column kinds."""

    path: Path
    column_names: tuple[str, ...]
    records: list[RawRecord]
    features: FeatureColumns
    digest: str  # sha256 of the file's bytes (names its generated decision ids)


def format_of(path: Path, declared: FileFormat | None = None) -> FileFormat:
    """The declared format, else the one the suffix names."""
    if declared is not None:
        return declared
    try:
        return FORMAT_OF_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise ReplayFormatError(
            f"cannot tell the format of {path.name!r} from its suffix; pass --format csv or "
            f"--format parquet (suffixes known: {', '.join(sorted(FORMAT_OF_SUFFIX))})"
        ) from None


def read_table(path: Path, file_format: FileFormat | None = None) -> RawTable:
    """Read every record of a CSV or Parquet replay file."""
    if not path.is_file():
        raise ReplayFormatError(f"replay file {path} does not exist")
    kind = format_of(path, file_format)
    if kind == "csv":
        names, records = _read_csv(path)
        features = _csv_feature_columns(names, records)
    else:
        names, records, features = _read_parquet(path)
    return RawTable(path, names, records, features, _digest(path))


def _check_header(names: tuple[str, ...]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ReplayFormatError(f"duplicate column names: {', '.join(duplicates)}")
    missing = [name for name in columns.REQUIRED if name not in names]
    if missing:
        raise ReplayFormatError(
            f"missing required columns: {', '.join(missing)} "
            f"(required: {', '.join(columns.REQUIRED)})"
        )


def _feature_names(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name not in columns.RESERVED]


def _read_csv(path: Path) -> tuple[tuple[str, ...], list[RawRecord]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ReplayFormatError(f"{path.name} is empty (no header line)") from None
        except UnicodeDecodeError as error:
            raise ReplayFormatError(f"{path.name} is not UTF-8 text: {error}") from error
        except csv.Error as error:
            raise ReplayFormatError(f"{path.name} is not a CSV file: {error}") from error
        names = tuple(name.strip() for name in header)
        _check_header(names)
        try:
            return names, list(_csv_records(reader, names))
        except UnicodeDecodeError as error:
            raise ReplayFormatError(f"{path.name} is not UTF-8 text: {error}") from error


def _csv_records(reader: Any, names: tuple[str, ...]) -> Iterator[RawRecord]:
    last_line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line, last_line = last_line + 1, reader.line_num
            yield RawRecord(line, {}, f"is not valid CSV: {error}")
            continue
        line, last_line = last_line + 1, reader.line_num
        if not fields:
            continue  # blank line
        if len(fields) != len(names):
            problem = f"has {len(fields)} fields but the header has {len(names)}"
            yield RawRecord(line, {}, problem)
            continue
        yield RawRecord(line, dict(zip(names, fields, strict=True)))


def _csv_feature_columns(names: tuple[str, ...], records: list[RawRecord]) -> FeatureColumns:
    """A CSV feature column is numeric when every non-empty cell reads as a number."""
    numeric = set()
    for name in _feature_names(names):
        cells = [record.cells.get(name) for record in records if record.problem is None]
        texts = [cell for cell in cells if isinstance(cell, str) and cell.strip()]
        if texts and all(is_number_text(text) for text in texts):
            numeric.add(name)
    categorical = set(_feature_names(names)) - numeric
    return FeatureColumns(frozenset(numeric), frozenset(categorical))


def _read_parquet(path: Path) -> tuple[tuple[str, ...], list[RawRecord], FeatureColumns]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ReplayFormatError(f"{path.name} is not a Parquet file: {error}") from error
    names = tuple(str(name) for name in table.column_names)
    _check_header(names)
    numeric = set()
    for name in _feature_names(names):
        kind = table.schema.field(name).type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            numeric.add(name)
    categorical = set(_feature_names(names)) - numeric
    records = [RawRecord(index + 1, cells) for index, cells in enumerate(table.to_pylist())]
    return names, records, FeatureColumns(frozenset(numeric), frozenset(categorical))


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
