"""Streaming catalogue files: CSV, JSON lines and Parquet as rows of raw cells.

Rows are read one at a time (Parquet a batch at a time), so a file of any size loads
in constant memory. Each row carries its line number: 1-based, the header being line 1
in CSV (a quoted cell over several lines counts them all, the row taking the number
of its first); the file's line in JSON lines; the row's 1-based number in Parquet. A
row whose shape is broken (wrong field count, not JSON, not UTF-8) comes back with a
``problem`` instead of failing the file; only a file that cannot be read at all raises
:class:`CatalogueFileError`. What a cell means is :mod:`feedrank.client.catalogue_rows`'
job.

Example::

    with open_rows(Path("posts.csv")) as rows:
        for row in rows:
            print(row.line, row.cells, row.problem)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

__all__ = [
    "FORMAT_OF_SUFFIX",
    "CatalogueFileError",
    "FileFormat",
    "RowSource",
    "SourceRow",
    "format_of",
    "open_rows",
]

FileFormat = Literal["csv", "parquet", "jsonl"]
FORMAT_OF_SUFFIX: dict[str, FileFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
_PARQUET_BATCH_ROWS = 4096


class CatalogueFileError(ValueError):
    """The file as a whole cannot be read (missing, unknown format, no header, not a table)."""


@dataclass(frozen=True)
class SourceRow:
    """One row: its line number, its cells by column name, and what breaks its shape."""

    line: int
    cells: Mapping[str, object]
    problem: str | None = None
    field: str | None = None


def format_of(path: Path, declared: FileFormat | None = None) -> FileFormat:
    """The declared format, else the one the file's suffix names."""
    if declared is not None:
        return declared
    try:
        return FORMAT_OF_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise CatalogueFileError(
            f"cannot tell the format of {path.name!r} from its suffix; pass --format csv, "
            f"parquet or jsonl (suffixes known: {', '.join(sorted(FORMAT_OF_SUFFIX))})"
        ) from None


class _Progress:
    """How much of a file has been read, in its source's unit."""

    def __init__(self) -> None:
        self.done = 0


class RowSource:
    """The rows of one open file, with its column names and how far reading has got.

    ``columns`` is the header (CSV) or schema (Parquet), None for JSON lines.
    Progress is ``done`` of ``total`` in ``unit`` ("bytes" for text files, "rows" for
    Parquet), for a progress bar.
    """

    def __init__(
        self,
        path: Path,
        file_format: FileFormat,
        columns: tuple[str, ...] | None,
        rows: Iterator[SourceRow],
        progress: tuple[_Progress, int, str],
        *,
        handle: IO[bytes] | None,
    ) -> None:
        self.path = path
        self.format = file_format
        self.columns = columns
        self._progress, self.total, self.unit = progress
        self._rows = rows
        self._handle = handle

    @property
    def done(self) -> int:
        """How much has been read so far, in ``unit``."""
        return self._progress.done

    def __iter__(self) -> Iterator[SourceRow]:
        return self._rows

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_rows(path: Path, file_format: FileFormat | None = None) -> RowSource:
    """Open a catalogue file for streaming; :class:`CatalogueFileError` if it cannot be."""
    kind = format_of(path, file_format)
    if not path.is_file():
        raise CatalogueFileError(f"{path} does not exist or is not a file")
    if kind == "parquet":
        return _open_parquet(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise CatalogueFileError(f"cannot open {path}: {error}") from error
    try:
        return _open_csv(path, handle) if kind == "csv" else _open_jsonl(path, handle)
    except BaseException:
        handle.close()
        raise


def _text_lines(handle: IO[bytes], progress: _Progress) -> Iterator[str]:
    """Decoded lines, counting bytes read; bytes that are not UTF-8 stay as surrogates."""
    for number, raw in enumerate(handle):
        progress.done += len(raw)
        text = raw.decode("utf-8", "surrogateescape")
        yield text.removeprefix("\ufeff") if number == 0 else text


def _open_csv(path: Path, handle: IO[bytes]) -> RowSource:
    progress = _Progress()
    reader = csv.reader(_text_lines(handle, progress))
    try:
        header = next(reader)
    except StopIteration:
        raise CatalogueFileError(f"{path.name} is empty (no header line)") from None
    except csv.Error as error:
        raise CatalogueFileError(f"{path.name} is not a CSV file: {error}") from error
    names = tuple(name.strip() for name in header)
    if _bad_unicode(",".join(names)):
        raise CatalogueFileError(f"the header of {path.name} is not UTF-8 text")
    _check_names(path, names)
    rows = _csv_rows(reader, names)
    return RowSource(path, "csv", names, rows, (progress, _size(path), "bytes"), handle=handle)


def _csv_rows(reader: Any, names: tuple[str, ...]) -> Iterator[SourceRow]:
    """Rows numbered by the line they start on (csv's ``line_num`` counts lines read)."""
    last_line = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line, last_line = last_line + 1, reader.line_num
            yield SourceRow(line, {}, f"is not valid CSV: {error}")
            continue
        line, last_line = last_line + 1, reader.line_num
        if not fields or fields == [""]:
            continue  # a blank line
        if len(fields) != len(names):
            yield SourceRow(line, {}, f"has {len(fields)} fields but the header has {len(names)}")
            continue
        cells = dict(zip(names, fields, strict=True))
        broken = next((name for name, cell in cells.items() if _bad_unicode(cell)), None)
        if broken is not None:
            yield SourceRow(line, {}, "is not UTF-8 text", broken)
            continue
        yield SourceRow(line, cells)


def _open_jsonl(path: Path, handle: IO[bytes]) -> RowSource:
    first = handle.read(4096).lstrip()
    handle.seek(0)
    if first.startswith(b"["):
        raise CatalogueFileError(
            f"{path.name} holds a JSON array; write one JSON object per line (JSON lines)"
        )
    progress = _Progress()
    rows = _jsonl_rows(_raw_lines(handle, progress))
    return RowSource(path, "jsonl", None, rows, (progress, _size(path), "bytes"), handle=handle)


def _raw_lines(handle: IO[bytes], progress: _Progress) -> Iterator[bytes]:
    for raw in handle:
        progress.done += len(raw)
        yield raw


def _jsonl_rows(lines: Iterator[bytes]) -> Iterator[SourceRow]:
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            document = json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
        except UnicodeDecodeError:
            yield SourceRow(line, {}, "is not UTF-8 text")
            continue
        except json.JSONDecodeError as error:
            yield SourceRow(line, {}, f"is not valid JSON: {error}")
            continue
        if not isinstance(document, dict):
            yield SourceRow(line, {}, f"must be a JSON object, got {type(document).__name__}")
            continue
        yield SourceRow(line, document)


def _open_parquet(path: Path) -> RowSource:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise CatalogueFileError(f"{path.name} is not a Parquet file: {error}") from error
    names = tuple(str(name) for name in parquet.schema_arrow.names)
    _check_names(path, names)
    total = int(parquet.metadata.num_rows)
    progress = _Progress()
    rows = _parquet_rows(path, parquet, progress)
    return RowSource(path, "parquet", names, rows, (progress, total, "rows"), handle=None)


def _parquet_rows(path: Path, parquet: Any, progress: _Progress) -> Iterator[SourceRow]:
    line = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for cells in batch.to_pylist():
                line += 1
                progress.done = line
                yield SourceRow(line, cells)
    except (pa.ArrowException, OSError) as error:
        raise CatalogueFileError(f"{path.name} cannot be read after row {line}: {error}") from error


def _check_names(path: Path, names: tuple[str, ...]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CatalogueFileError(f"{path.name}: duplicate column names {duplicates}")
    if "" in names:
        raise CatalogueFileError(f"{path.name}: a column has no name")


def _bad_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _size(path: Path) -> int:
    return path.stat().st_size
