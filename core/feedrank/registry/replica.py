"""A replica's own copy of the registry: versions fetched on demand into a cache directory.

A serving replica with no disk shared with the registry keeps a cache laid out as a
registry (a :class:`LocalModelRegistry` at ``cache_dir``). Opening a version it lacks
fetches it from its source first (a :data:`VersionFetch`, e.g. ``Deploy.FetchModel``)
and stores it through :meth:`LocalModelRegistry.receive`: every file checked against
the manifest, the version visible only whole. Every open then goes through the same
:meth:`LocalModelRegistry.open_verified` as a local registry's.

The processes of one replica may share a cache: one fetches while the others wait on a
file lock, then find the version there. After each fetch the cache keeps the newest
``keep_versions`` versions and every version opened within ``in_use_s`` (a process may
still be reading it); the others are deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from feedrank.registry.local import LocalModelRegistry
from feedrank.registry.manifest import (
    VersionNotFoundError,
    VersionRefusedError,
    check_version_name,
)
from feedrank.registry.transfer import VersionPart

VersionFetch = Callable[[str], Iterable[VersionPart]]
"""A version's parts from its source (``transfer``): raises VersionNotFoundError for an
unknown version and VersionUnavailableError when the source cannot be reached."""

_LOCK_FILE = ".fetch.lock"
_LEFTOVER_PREFIXES = (".incoming-", ".pruned-")


class ReplicaRegistry:
    """Opens verified versions from ``cache_dir``, fetching the ones it lacks."""

    def __init__(
        self,
        cache_dir: Path,
        fetch: VersionFetch,
        *,
        keep_versions: int = 4,
        in_use_s: float = 900.0,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
        self.cache = LocalModelRegistry(cache_dir)
        self.fetch = fetch
        self.keep_versions = keep_versions
        self.in_use_s = in_use_s

    def open_verified(self, version: str) -> Path:
        """The verified directory of ``version``, fetched first when not cached."""
        self.ensure(version)
        directory = self.cache.open_verified(version)
        os.utime(directory)  # opened now: kept by the next prune for in_use_s
        return directory

    def ensure(self, version: str) -> int:
        """Fetch ``version`` unless cached; the bytes fetched (0: it was cached)."""
        check_version_name(version)
        if self._cached(version):
            return 0
        with self._fetch_lock():
            if self._cached(version):  # another process fetched it while we waited
                return 0
            self._remove_leftovers()
            manifest = self.cache.receive(version, self.fetch(version))
            self._prune(keeping=version)
        return sum(digest.size_bytes for digest in manifest.files.values())

    def _cached(self, version: str) -> bool:
        try:
            self.cache.manifest(version)
        except VersionNotFoundError:
            return False
        except VersionRefusedError:
            return True  # there, but broken: open_verified says why
        return True

    @contextmanager
    def _fetch_lock(self) -> Iterator[None]:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        with (self.cache.root / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_leftovers(self) -> None:
        """Staging directories of fetches that died mid-way (we hold the lock: no other
        fetch is running)."""
        for path in self.cache.root.iterdir():
            if path.is_dir() and path.name.startswith(_LEFTOVER_PREFIXES):
                shutil.rmtree(path, ignore_errors=True)

    def _prune(self, *, keeping: str) -> list[str]:
        recent = time.time() - self.in_use_s
        versions_dir = self.cache.directory(keeping).parent
        in_use = {
            path.name
            for path in versions_dir.iterdir()
            if path.is_dir() and path.stat().st_mtime >= recent
        }
        return self.cache.prune(keep_newest=self.keep_versions, protected={keeping, *in_use})
