"""One registry version as a stream of parts, and the receiving end that checks every byte.

A replica that has no shared disk with the registry gets a version as a sequence of
parts: a :class:`VersionHeader` (the version's ``manifest.json`` byte for byte, and
the files it lists), then :class:`FileChunk` s of at most :data:`CHUNK_BYTES`, every
file's chunks in order, one file after another (an empty file is one empty chunk).
:func:`version_parts` reads them from a registry; :class:`StagedVersion` writes them
into a staging directory, hashing as it writes, and refuses (``TransferRefusedError``)
a stream whose bytes disagree with their manifest: a chunk out of order or for a file
the manifest does not list, a file longer or shorter than recorded, a wrong SHA-256.

Transport-neutral: the deploy service maps the parts to ``Deploy.FetchModel``'s
messages, the explore replicas map them back (``feedrank.explore.model_fetch``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from feedrank.core.durable_files import fsync_path
from feedrank.registry.manifest import (
    MANIFEST_FILE,
    FileDigest,
    RegistryError,
    VersionManifest,
    VersionRefusedError,
)

if TYPE_CHECKING:
    from feedrank.registry.local import ModelRegistry

CHUNK_BYTES = 1 << 20
"""The most file bytes one chunk carries (1 MiB: well inside gRPC's 4 MiB messages)."""


class TransferRefusedError(VersionRefusedError):
    """The bytes that arrived disagree with their manifest: the copy is discarded."""


class VersionUnavailableError(RegistryError):
    """The version's source could not be reached or broke off; asking again may work."""


@dataclass(frozen=True)
class VersionHeader:
    """The first part: the manifest as stored, and the files it says will follow."""

    version: str
    manifest_json: bytes
    files: Mapping[str, FileDigest]


@dataclass(frozen=True)
class FileChunk:
    path: str
    offset: int
    data: bytes


VersionPart = VersionHeader | FileChunk


def version_parts(
    registry: ModelRegistry, version: str, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[VersionPart]:
    """``version``'s header, then its files' chunks as stored (not verified here: the
    receiver checks them). VersionNotFoundError for an unknown version, as soon as the
    first part is asked for."""
    with registry.open_file(version, MANIFEST_FILE) as file:
        manifest_json = file.read()
    where = f"{version}/{MANIFEST_FILE}"
    manifest = VersionManifest.from_json(_text(manifest_json, where), where=where)
    if manifest.version != version:
        raise VersionRefusedError(f"{version}'s manifest names version {manifest.version}")
    yield VersionHeader(version, manifest_json, manifest.files)
    for path in sorted(manifest.files):
        with registry.open_file(version, path) as file:
            yield from _file_chunks(path, file, chunk_bytes)


def _file_chunks(path: str, file: BinaryIO, chunk_bytes: int) -> Iterator[FileChunk]:
    offset = 0
    while data := file.read(chunk_bytes):
        yield FileChunk(path, offset, data)
        offset += len(data)
    if offset == 0:
        yield FileChunk(path, 0, b"")


@dataclass
class _FileInProgress:
    path: str
    handle: BinaryIO
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0


class StagedVersion:
    """Writes one version's parts into ``staging`` (an empty directory), checking them.

    Feed it every part with :meth:`accept`, then call :meth:`finish`: it returns the
    manifest once every file has arrived whole with its recorded SHA-256 and the
    manifest is written beside them. Any disagreement raises TransferRefusedError;
    the caller discards ``staging`` then (nothing in it is ever served).
    """

    def __init__(self, staging: Path, version: str) -> None:
        self.staging = staging
        self.version = version
        self.received_bytes = 0
        self._header: VersionHeader | None = None
        self._manifest: VersionManifest | None = None
        self._current: _FileInProgress | None = None
        self._done: dict[str, FileDigest] = {}

    def accept(self, part: VersionPart) -> None:
        if isinstance(part, VersionHeader):
            self._accept_header(part)
        else:
            self._accept_chunk(part)

    def finish(self) -> VersionManifest:
        manifest = self._manifest
        if manifest is None:
            raise TransferRefusedError(f"{self.version}: the stream ended before its manifest")
        self._close_current()
        for path, expected in manifest.files.items():
            actual = self._done.get(path)
            if actual is None:
                raise TransferRefusedError(f"{self.version}: {path} never arrived")
            if actual.size_bytes != expected.size_bytes:
                raise TransferRefusedError(
                    f"{self.version}: {path} is truncated: {actual.size_bytes} of "
                    f"{expected.size_bytes} bytes arrived"
                )
            if actual.sha256 != expected.sha256:
                raise TransferRefusedError(
                    f"{self.version}: {path} fails its checksum (sha256 {actual.sha256[:12]}…, "
                    f"manifest: {expected.sha256[:12]}…): changed after it was published?"
                )
        assert self._header is not None  # set with the manifest
        manifest_path = self.staging / MANIFEST_FILE
        manifest_path.write_bytes(self._header.manifest_json)
        fsync_path(manifest_path)
        return manifest

    def discard(self) -> None:
        """Close what is open (the caller removes ``staging``)."""
        if self._current is not None:
            self._current.handle.close()
            self._current = None

    def _accept_header(self, header: VersionHeader) -> None:
        if self._header is not None:
            raise TransferRefusedError(f"{self.version}: a second manifest in one stream")
        where = f"{self.version}: the manifest received"
        manifest = VersionManifest.from_json(_text(header.manifest_json, where), where=where)
        if header.version != self.version or manifest.version != self.version:
            raise TransferRefusedError(
                f"asked for {self.version}, received {header.version} "
                f"(its manifest says {manifest.version})"
            )
        if dict(header.files) != manifest.files:
            raise TransferRefusedError(
                f"{self.version}: the file list sent disagrees with the manifest sent"
            )
        self._header, self._manifest = header, manifest

    def _accept_chunk(self, chunk: FileChunk) -> None:
        manifest = self._manifest
        if manifest is None:
            raise TransferRefusedError(f"{self.version}: a file chunk came before the manifest")
        expected = manifest.files.get(chunk.path)
        if expected is None:
            raise TransferRefusedError(f"{self.version}: {chunk.path!r} is not in its manifest")
        if self._current is None or self._current.path != chunk.path:
            self._open(chunk.path)
        current = self._current
        assert current is not None
        if chunk.offset != current.size:
            raise TransferRefusedError(
                f"{self.version}: {chunk.path} chunk at byte {chunk.offset}, expected byte "
                f"{current.size} (a chunk was lost, repeated or reordered)"
            )
        if current.size + len(chunk.data) > expected.size_bytes:
            raise TransferRefusedError(
                f"{self.version}: {chunk.path} runs past its manifest's {expected.size_bytes} bytes"
            )
        current.handle.write(chunk.data)
        current.digest.update(chunk.data)
        current.size += len(chunk.data)
        self.received_bytes += len(chunk.data)

    def _open(self, path: str) -> None:
        if path in self._done:
            raise TransferRefusedError(f"{self.version}: {path} was sent twice")
        self._close_current()
        target = self.staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._current = _FileInProgress(path, target.open("xb"))

    def _close_current(self) -> None:
        current = self._current
        if current is None:
            return
        current.handle.flush()
        os.fsync(current.handle.fileno())
        current.handle.close()
        self._done[current.path] = FileDigest(current.digest.hexdigest(), current.size)
        self._current = None


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TransferRefusedError(f"{where}: not UTF-8 text: {error}") from error
