"""The model registry: versioned, immutable model directories on the local filesystem.

Layout under the registry root::

    versions/v0001/manifest.json     what the version is (see manifest.py)
    versions/v0001/two_tower.safetensors, ranker.safetensors, post_embeddings.safetensors
    versions/v0001/ann/...           the ANN index files, when shipped

A version is written into a private staging directory, digested, given its manifest and
then renamed into ``versions/`` in one step under the next free number, so readers see a
whole version or none, and two publishers never get the same number. Files are made
read-only; nothing in a published version is ever rewritten. Old versions are deleted
only by :meth:`ModelRegistry.prune` (the deploy service keeps the newest few and every
version a rollout may still need).

:class:`ModelRegistry` is the small interface the learners, the deploy service and the
explore workers use, so object storage can replace the filesystem later. A replica with
no shared disk keeps its own copy: :meth:`LocalModelRegistry.receive` stores a version
streamed from elsewhere (``transfer``) under its own name, checked byte for byte.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from feedrank.core.clock import Clock, SystemClock
from feedrank.core.durable_files import fsync_directory, fsync_path
from feedrank.core.feature_schema import schema_hash
from feedrank.models.encoding import ENCODING_VERSION
from feedrank.registry.manifest import (
    MANIFEST_FILE,
    VERSION_PATTERN,
    RegistryError,
    TrainingData,
    VersionManifest,
    VersionNotFoundError,
    VersionRefusedError,
    check_version_name,
    digest_tree,
    file_digest,
)
from feedrank.registry.transfer import StagedVersion, VersionPart

StagingWriter = Callable[[Path], None]
_PUBLISH_ATTEMPTS = 100


class ModelRegistry(abc.ABC):
    """Versions of served models: publish, list, and open only what verifies."""

    @abc.abstractmethod
    def publish(
        self,
        write: StagingWriter,
        *,
        parent: str = "",
        training: TrainingData | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> VersionManifest:
        """Let ``write`` fill a fresh directory, then publish it as the next version."""

    @abc.abstractmethod
    def versions(self) -> list[VersionManifest]:
        """Every published version, oldest first (manifests only; files not re-hashed)."""

    @abc.abstractmethod
    def manifest(self, version: str) -> VersionManifest:
        """The manifest of ``version``; VersionNotFoundError or VersionRefusedError."""

    @abc.abstractmethod
    def open_verified(self, version: str) -> Path:
        """The directory of ``version`` after checking every file against its manifest."""

    @abc.abstractmethod
    def open_file(self, version: str, name: str) -> BinaryIO:
        """One file of ``version`` as stored, ``manifest.json`` or one its manifest lists,
        open for reading and NOT verified: for streaming it to a replica, which checks
        every byte against the manifest. VersionNotFoundError when it is not there."""

    @abc.abstractmethod
    def prune(self, *, keep_newest: int, protected: Collection[str]) -> list[str]:
        """Delete every version but the newest ``keep_newest`` and the ``protected`` ones
        (what serves, what may be rolled back to); the names deleted, oldest first."""

    def latest(self) -> VersionManifest | None:
        versions = self.versions()
        return versions[-1] if versions else None


class LocalModelRegistry(ModelRegistry):
    def __init__(
        self,
        root: Path,
        *,
        clock: Clock | None = None,
        expected_schema_hash: str | None = None,
        expected_encoding_version: int = ENCODING_VERSION,
    ) -> None:
        self.root = root
        self._versions_dir = root / "versions"
        self._clock = clock or SystemClock()
        self._schema_hash = expected_schema_hash or schema_hash()
        self._encoding_version = expected_encoding_version

    def publish(
        self,
        write: StagingWriter,
        *,
        parent: str = "",
        training: TrainingData | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> VersionManifest:
        if parent:
            self.manifest(parent)  # the parent must exist
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            write(staging)
            manifest = VersionManifest(
                version="v0000",  # replaced by the number the rename claims
                parent=parent,
                created_ms=self._clock.now_ms(),
                feature_schema_hash=self._schema_hash,
                encoding_version=self._encoding_version,
                training=training or TrainingData(),
                metrics=dict(metrics or {}),
                files=digest_tree(staging),
            )
            if not manifest.files:
                raise RegistryError("refusing to publish an empty version")
            for path in staging.rglob("*"):
                if path.is_file():
                    fsync_path(path)
            return self._claim_next_version(staging, manifest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def versions(self) -> list[VersionManifest]:
        if not self._versions_dir.is_dir():
            return []
        names = sorted(
            (p.name for p in self._versions_dir.iterdir() if VERSION_PATTERN.match(p.name)),
            key=_number,
        )
        manifests = []
        for name in names:
            try:
                manifests.append(self.manifest(name))
            except VersionRefusedError:
                continue  # listed nowhere, served never; open_verified says why
        return manifests

    def manifest(self, version: str) -> VersionManifest:
        check_version_name(version)
        path = self._versions_dir / version / MANIFEST_FILE
        try:
            text = path.read_text()
        except FileNotFoundError as error:
            raise VersionNotFoundError(f"no version {version} in {self.root}") from error
        manifest = VersionManifest.from_json(text, where=str(path))
        if manifest.version != version:
            raise VersionRefusedError(f"{path} names version {manifest.version}, not {version}")
        return manifest

    def open_verified(self, version: str) -> Path:
        manifest = self.manifest(version)
        directory = self._versions_dir / version
        if manifest.feature_schema_hash != self._schema_hash:
            raise VersionRefusedError(
                f"{version} was trained on feature schema {manifest.feature_schema_hash}, "
                f"this code serves {self._schema_hash}"
            )
        if manifest.encoding_version != self._encoding_version:
            raise VersionRefusedError(
                f"{version} uses encoding {manifest.encoding_version}, "
                f"this code has {self._encoding_version}"
            )
        present = {
            p.relative_to(directory).as_posix()
            for p in directory.rglob("*")
            if p.is_file() and p.name != MANIFEST_FILE
        }
        if present != set(manifest.files):
            raise VersionRefusedError(
                f"{version}: files differ from its manifest: "
                f"unexpected {sorted(present - set(manifest.files))}, "
                f"missing {sorted(set(manifest.files) - present)}"
            )
        for name, expected in manifest.files.items():
            actual = file_digest(directory / name)
            if actual != expected:
                raise VersionRefusedError(
                    f"{version}: {name} fails its checksum "
                    f"({actual.size_bytes} bytes, sha256 {actual.sha256[:12]}…; "
                    f"manifest: {expected.size_bytes} bytes, {expected.sha256[:12]}…)"
                )
        return directory

    def directory(self, version: str) -> Path:
        """Where ``version``'s files are (or would be); nothing is checked."""
        return self._versions_dir / version

    def open_file(self, version: str, name: str) -> BinaryIO:
        listed = self.manifest(version).files  # the version exists, its name is sound
        if name != MANIFEST_FILE and name not in listed:
            raise VersionNotFoundError(f"{version} has no file {name!r} in its manifest")
        path = self.directory(version) / name
        try:
            return path.open("rb")
        except FileNotFoundError as error:
            raise VersionNotFoundError(f"{version}: {name} is gone from {self.root}") from error

    def receive(self, version: str, parts: Iterable[VersionPart]) -> VersionManifest:
        """Store ``version`` from the parts another registry streamed (``transfer``) under
        its own name: written into a private staging directory, every file checked against
        the manifest that came first, then renamed into ``versions/`` in one step, so a
        reader sees the whole version or none. TransferRefusedError when the bytes
        disagree with the manifest; whatever ``parts`` raises (the source broke off)
        passes through. Either way nothing of the attempt stays behind."""
        check_version_name(version)
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".incoming-{version}-", dir=self.root))
        staged = StagedVersion(staging, version)
        try:
            for part in parts:
                staged.accept(part)
            manifest = staged.finish()
            for path in [staging, *staging.rglob("*")]:
                if path.is_dir():
                    fsync_path(path)  # the files' entries (their data is synced already)
            target = self.directory(version)
            try:
                staging.rename(target)
            except OSError as error:
                raise RegistryError(f"{version} is already in {self.root}") from error
            fsync_directory(self._versions_dir)
            _make_read_only(target)
            return manifest
        finally:
            staged.discard()
            shutil.rmtree(staging, ignore_errors=True)

    def prune(self, *, keep_newest: int, protected: Collection[str]) -> list[str]:
        if keep_newest < 1:
            raise ValueError(f"keep_newest must be >= 1, got {keep_newest}")
        if not self._versions_dir.is_dir():
            return []
        names = sorted((p.name for p in self._all_version_dirs()), key=_number)
        doomed = [name for name in names[:-keep_newest] if name not in protected]
        for name in doomed:
            # Out of the listing in one rename, then deleted: a reader never sees half a
            # version (opening one being deleted fails verification, it never half-loads).
            trash = Path(tempfile.mkdtemp(prefix=f".pruned-{name}-", dir=self.root))
            (self._versions_dir / name).rename(trash / name)
            for path in trash.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            shutil.rmtree(trash)
        if doomed:
            fsync_directory(self._versions_dir)
        return doomed

    def _claim_next_version(self, staging: Path, manifest: VersionManifest) -> VersionManifest:
        """Rename ``staging`` to the next free version number (retrying on races)."""
        for _ in range(_PUBLISH_ATTEMPTS):
            number = max((_number(p.name) for p in self._all_version_dirs()), default=0) + 1
            claimed = replace(manifest, version=f"v{number:04d}")
            (staging / MANIFEST_FILE).write_text(claimed.to_json())
            fsync_path(staging / MANIFEST_FILE)
            target = self._versions_dir / claimed.version
            try:
                staging.rename(target)  # fails when another publisher took the number
            except OSError:
                continue
            fsync_directory(self._versions_dir)
            _make_read_only(target)
            return claimed
        raise RegistryError(f"could not claim a version number in {self._versions_dir}")

    def _all_version_dirs(self) -> list[Path]:
        return [p for p in self._versions_dir.iterdir() if VERSION_PATTERN.match(p.name)]


def _number(name: str) -> int:
    return int(name[1:])


def _make_read_only(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
