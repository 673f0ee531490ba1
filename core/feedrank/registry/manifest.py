"""What a registry version says about itself: ``manifest.json``, checked field by field.

A manifest names the version, its parent, when it was made, what it was trained on
(time range, Kafka offsets, example count), its metrics, the feature schema and encoding
it needs, and the SHA-256 and size of every file in the version directory. The registry
refuses a version whose files do not match their digests, or whose schema or encoding
this code does not serve.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "feedrank-registry/1"
MANIFEST_FILE = "manifest.json"
VERSION_PATTERN = re.compile(r"^v[0-9]{4,}$")
_CHUNK = 1 << 20


class RegistryError(Exception):
    """The base of every registry failure."""


class VersionNotFoundError(RegistryError, LookupError):
    """No version of that name in the registry."""


class VersionRefusedError(RegistryError, ValueError):
    """A version that fails its checksums, schema or format: it must never serve."""


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class TrainingData:
    """Where a version's training examples came from."""

    source: str = ""  # e.g. "kafka:feedrank.examples", "file:examples.parquet", "init"
    examples: int = 0
    start_ms: int = 0  # event-time range of the examples (decision times)
    end_ms: int = 0
    kafka_offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" → next

    def __post_init__(self) -> None:
        if self.examples < 0 or self.start_ms < 0 or self.end_ms < self.start_ms:
            raise VersionRefusedError(f"invalid training data range: {self}")


@dataclass(frozen=True)
class VersionManifest:
    version: str
    parent: str
    created_ms: int
    feature_schema_hash: str
    encoding_version: int
    training: TrainingData
    metrics: dict[str, float]
    files: dict[str, FileDigest]
    format: str = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = "manifest") -> VersionManifest:
        """Parse a manifest; VersionRefusedError naming what is wrong."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise VersionRefusedError(f"{where}: not JSON: {error}") from error
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise VersionRefusedError(f"{where}: not a {MANIFEST_FORMAT} manifest")
        try:
            manifest = cls(
                version=_text(raw, "version"),
                parent=_text(raw, "parent"),
                created_ms=_integer(raw, "created_ms"),
                feature_schema_hash=_text(raw, "feature_schema_hash"),
                encoding_version=_integer(raw, "encoding_version"),
                training=TrainingData(**_training_fields(raw.get("training"))),
                metrics=_metrics(raw.get("metrics")),
                files=_files(raw.get("files")),
            )
        except (KeyError, TypeError) as error:
            raise VersionRefusedError(f"{where}: malformed field: {error}") from error
        if not VERSION_PATTERN.match(manifest.version):
            raise VersionRefusedError(f"{where}: bad version name {manifest.version!r}")
        return manifest


def check_version_name(version: str) -> None:
    """VersionNotFoundError unless ``version`` is a version name (never a path)."""
    if not VERSION_PATTERN.match(version):
        raise VersionNotFoundError(f"{version!r} is not a version name (v0001, v0002, …)")


def file_digest(path: Path) -> FileDigest:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(digest.hexdigest(), size)


def digest_tree(directory: Path) -> dict[str, FileDigest]:
    """SHA-256 of every file under ``directory`` (but the manifest), by relative path."""
    return {
        path.relative_to(directory).as_posix(): file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def _integer(raw: dict[str, Any], name: str) -> int:
    value = raw[name]
    if type(value) is not int:
        raise TypeError(f"{name} must be an integer")
    return value


def _training_fields(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError("training must be an object")
    offsets = raw.get("kafka_offsets", {})
    if not isinstance(offsets, dict) or not all(type(v) is int for v in offsets.values()):
        raise TypeError("training.kafka_offsets must map text to integers")
    return {
        "source": _text(raw, "source"),
        "examples": _integer(raw, "examples"),
        "start_ms": _integer(raw, "start_ms"),
        "end_ms": _integer(raw, "end_ms"),
        "kafka_offsets": dict(offsets),
    }


def _metrics(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise TypeError("metrics must be an object")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if type(value) not in (int, float) or not math.isfinite(value):
            raise TypeError(f"metric {name!r} must be a finite number")
        metrics[str(name)] = float(value)
    return metrics


def _files(raw: object) -> dict[str, FileDigest]:
    if not isinstance(raw, dict) or not raw:
        raise TypeError("files must be a non-empty object")
    files: dict[str, FileDigest] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or ".." in Path(name).parts or Path(name).is_absolute():
            raise TypeError(f"bad file entry {name!r}")
        files[name] = FileDigest(_text(entry, "sha256"), _integer(entry, "size_bytes"))
    return files
