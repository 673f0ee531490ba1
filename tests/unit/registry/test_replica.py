"""A replica's cache: fetched once, opened through the verified path, pruned with care."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedrank.registry import (
    LocalModelRegistry,
    ReplicaRegistry,
    TransferRefusedError,
    VersionNotFoundError,
    VersionPart,
    VersionRefusedError,
    version_parts,
)
from tests.unit.registry.test_transfer import FILES, publish_files


class CountingFetch:
    """Parts straight from a source registry, counting the fetches (optionally slow)."""

    def __init__(self, source: LocalModelRegistry, delay_s: float = 0.0) -> None:
        self.source = source
        self.delay_s = delay_s
        self.fetched: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, version: str) -> Iterator[VersionPart]:
        with self._lock:
            self.fetched.append(version)
        time.sleep(self.delay_s)
        yield from version_parts(self.source, version, chunk_bytes=1000)


@pytest.fixture
def source(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "source")


def test_a_version_is_fetched_once_then_opened_from_the_cache(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish_files(source, FILES)
    fetch = CountingFetch(source)
    replica = ReplicaRegistry(tmp_path / "cache", fetch)
    assert replica.ensure(version) == sum(len(data) for data in FILES.values())
    directory = replica.open_verified(version)
    assert replica.ensure(version) == 0
    assert fetch.fetched == [version]
    assert directory == tmp_path / "cache" / "versions" / version
    assert (directory / "weights.bin").read_bytes() == FILES["weights.bin"]


def test_processes_sharing_a_cache_fetch_a_version_once(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish_files(source, FILES)
    fetch = CountingFetch(source, delay_s=0.2)
    replicas = [ReplicaRegistry(tmp_path / "cache", fetch) for _ in range(3)]
    threads = [threading.Thread(target=r.open_verified, args=(version,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert fetch.fetched == [version]  # the others waited on the lock, then found it


def test_a_corrupt_source_is_refused_and_a_good_fetch_follows(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish_files(source, FILES)
    target = source.directory(version) / "weights.bin"
    target.chmod(0o644)
    target.write_bytes(FILES["weights.bin"][:-1] + b"\x00")  # changed after publishing
    replica = ReplicaRegistry(tmp_path / "cache", CountingFetch(source))
    with pytest.raises(TransferRefusedError, match=r"weights\.bin fails its checksum"):
        replica.open_verified(version)
    assert replica.cache.versions() == []
    assert sorted(path.name for path in replica.cache.root.iterdir()) == [".fetch.lock", "versions"]
    assert list(replica.cache.directory(version).parent.iterdir()) == []

    target.write_bytes(FILES["weights.bin"])  # repaired: the next try fetches it
    assert (replica.open_verified(version) / "weights.bin").read_bytes() == FILES["weights.bin"]


def test_an_unknown_version_is_not_found_and_nothing_is_fetched(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    fetch = CountingFetch(source)
    replica = ReplicaRegistry(tmp_path / "cache", fetch)
    with pytest.raises(VersionNotFoundError):
        replica.open_verified("v0003")
    with pytest.raises(VersionNotFoundError, match="not a version name"):
        replica.open_verified("../../etc")
    assert fetch.fetched == ["v0003"]


def test_a_cached_copy_changed_on_disk_is_refused(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish_files(source, FILES)
    replica = ReplicaRegistry(tmp_path / "cache", CountingFetch(source))
    directory = replica.open_verified(version)
    (directory / "weights.bin").chmod(0o644)
    (directory / "weights.bin").write_bytes(b"rot")
    with pytest.raises(VersionRefusedError, match="fails its checksum"):
        replica.open_verified(version)


def test_a_fetch_keeps_the_newest_and_the_recently_opened_versions(
    source: LocalModelRegistry, tmp_path: Path
) -> None:
    versions = [publish_files(source, {"w.bin": bytes([seed]) * 10}) for seed in range(5)]
    replica = ReplicaRegistry(tmp_path / "cache", CountingFetch(source), keep_versions=2)
    for version in versions[:4]:
        replica.open_verified(version)
    long_ago = time.time() - 2 * replica.in_use_s
    for version in versions[1:4]:  # v0002..v0004 unopened for long; v0001 opened just now
        os.utime(replica.cache.directory(version), (long_ago, long_ago))
    leftover = replica.cache.root / f".incoming-{versions[4]}-dead"
    leftover.mkdir()  # a fetch that died mid-way
    replica.open_verified(versions[4])
    kept = [manifest.version for manifest in replica.cache.versions()]
    assert kept == [versions[0], versions[3], versions[4]]
    assert not leftover.exists()
