"""The local registry: immutable numbered versions, and refusal of anything that fails checks."""

from __future__ import annotations

import pickle
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from feedrank.core.clock import ManualClock
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.serialization import ModelFormatError
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from feedrank.registry import (
    LocalModelRegistry,
    ModelBundle,
    RegistryError,
    TrainingData,
    VersionNotFoundError,
    VersionRefusedError,
    read_bundle,
    write_bundle,
)
from feedrank.registry.bundle import EMBEDDINGS_FILE, RANKER_FILE, TWO_TOWER_FILE


def small_bundle(seed: int = 0, posts: int = 20) -> ModelBundle:
    two_tower = TwoTowerModel(
        TwoTowerConfig(
            seed=seed, embedding_dim=16, user_id_buckets=64, post_id_buckets=64, topic_dims=8
        )
    )
    ranker = RankerModel(
        RankerConfig(seed=seed, tower_dim=16, user_id_buckets=64, post_id_buckets=64)
    )
    vectors = np.random.default_rng(seed).normal(size=(posts, 16)).astype(np.float32)
    return ModelBundle(two_tower, ranker, np.arange(posts, dtype=np.int64), vectors)


def publish(registry: LocalModelRegistry, seed: int = 0, parent: str = "") -> str:
    bundle = small_bundle(seed)
    manifest = registry.publish(
        lambda directory: write_bundle(directory, bundle),
        parent=parent,
        training=TrainingData(source="test", examples=10, start_ms=1, end_ms=2),
        metrics={"auc": 0.85},
    )
    return manifest.version


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry", clock=ManualClock(1_000))


def test_versions_are_numbered_in_order_with_their_manifest(registry: LocalModelRegistry) -> None:
    first = publish(registry)
    second = publish(registry, seed=1, parent=first)

    assert (first, second) == ("v0001", "v0002")
    listed = registry.versions()
    assert [m.version for m in listed] == ["v0001", "v0002"]
    assert listed[1].parent == "v0001"
    assert listed[1].metrics == {"auc": 0.85}
    assert listed[1].training.examples == 10
    assert listed[1].created_ms == 1_000
    assert set(listed[1].files) == {TWO_TOWER_FILE, RANKER_FILE, EMBEDDINGS_FILE}
    assert registry.latest() == listed[1]


def test_a_verified_version_round_trips_its_bundle_exactly(registry: LocalModelRegistry) -> None:
    version = publish(registry, seed=3)
    loaded = read_bundle(registry.open_verified(version))
    original = small_bundle(3)

    np.testing.assert_array_equal(loaded.post_vectors, original.post_vectors)
    for name, tensor in original.two_tower.state_dict().items():
        assert bool((loaded.two_tower.state_dict()[name] == tensor).all()), name
    for name, tensor in original.ranker.state_dict().items():
        assert bool((loaded.ranker.state_dict()[name] == tensor).all()), name


def test_published_files_are_read_only(registry: LocalModelRegistry) -> None:
    directory = registry.open_verified(publish(registry))
    assert all(not (p.stat().st_mode & 0o222) for p in directory.iterdir())


def test_unknown_versions_and_parents_are_not_found(registry: LocalModelRegistry) -> None:
    with pytest.raises(VersionNotFoundError):
        registry.manifest("v0042")
    with pytest.raises(VersionNotFoundError):
        registry.manifest("../etc")
    with pytest.raises(VersionNotFoundError):
        publish(registry, parent="v0007")
    assert registry.versions() == []


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_a_flipped_byte_fails_the_checksum(registry: LocalModelRegistry) -> None:
    directory = registry.open_verified(publish(registry))
    target = _writable(directory / RANKER_FILE)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))

    with pytest.raises(VersionRefusedError, match=r"ranker\.safetensors fails its checksum"):
        registry.open_verified("v0001")


def test_a_truncated_file_is_refused(registry: LocalModelRegistry) -> None:
    directory = registry.open_verified(publish(registry))
    target = _writable(directory / TWO_TOWER_FILE)
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(VersionRefusedError, match="checksum"):
        registry.open_verified("v0001")


class _Payload:
    ran = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_Payload.mark, ())

    @staticmethod
    def mark() -> None:
        _Payload.ran = True


def test_a_pickle_planted_as_weights_is_refused_and_never_runs(
    registry: LocalModelRegistry, tmp_path: Path
) -> None:
    """Even with a forged manifest (checksums matching the pickle), loading refuses it."""
    bundle = small_bundle()

    def plant_pickle(directory: Path) -> None:
        write_bundle(directory, bundle)
        (directory / TWO_TOWER_FILE).write_bytes(pickle.dumps(_Payload()))

    version = registry.publish(plant_pickle).version
    directory = registry.open_verified(version)  # checksums match what was published
    with pytest.raises(ModelFormatError):
        read_bundle(directory)
    assert not _Payload.ran


def test_an_extra_or_missing_file_is_refused(registry: LocalModelRegistry) -> None:
    directory = registry.open_verified(publish(registry))
    directory.chmod(0o755)
    (directory / "extra.bin").write_bytes(b"x")
    with pytest.raises(VersionRefusedError, match=re.escape("unexpected ['extra.bin']")):
        registry.open_verified("v0001")
    (directory / "extra.bin").unlink()
    _writable(directory / EMBEDDINGS_FILE).unlink()
    with pytest.raises(VersionRefusedError, match="missing"):
        registry.open_verified("v0001")


def test_another_feature_schema_is_refused(tmp_path: Path) -> None:
    writer = LocalModelRegistry(tmp_path, expected_schema_hash="old-schema")
    publish(writer)
    reader = LocalModelRegistry(tmp_path)
    with pytest.raises(VersionRefusedError, match="feature schema old-schema"):
        reader.open_verified("v0001")


def test_a_corrupt_manifest_is_refused_and_left_out_of_listings(
    registry: LocalModelRegistry,
) -> None:
    directory = registry.open_verified(publish(registry))
    publish(registry)
    _writable(directory / "manifest.json").write_text("{not json")

    with pytest.raises(VersionRefusedError, match="not JSON"):
        registry.manifest("v0001")
    assert [m.version for m in registry.versions()] == ["v0002"]


def test_an_empty_version_is_not_published(registry: LocalModelRegistry) -> None:
    with pytest.raises(RegistryError, match="empty"):
        registry.publish(lambda directory: None)
    assert registry.versions() == []


def test_concurrent_publishers_get_distinct_versions(registry: LocalModelRegistry) -> None:
    bundle = small_bundle()
    versions: list[str] = []
    lock = threading.Lock()

    def publish_one() -> None:
        manifest = registry.publish(lambda directory: write_bundle(directory, bundle))
        with lock:
            versions.append(manifest.version)

    threads = [threading.Thread(target=publish_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [f"v{n:04d}" for n in range(1, 7)]


def test_a_bundle_with_mismatched_dimensions_is_refused() -> None:
    bundle = small_bundle()
    with pytest.raises(ModelFormatError, match="post embeddings"):
        ModelBundle(bundle.two_tower, bundle.ranker, bundle.post_index, bundle.post_vectors[:, :8])


def test_pruning_keeps_the_newest_and_the_protected_versions(
    registry: LocalModelRegistry,
) -> None:
    names = [publish(registry, seed) for seed in range(6)]
    assert registry.prune(keep_newest=2, protected={"v0002", "v0009"}) == [
        "v0001",
        "v0003",
        "v0004",
    ]
    assert [manifest.version for manifest in registry.versions()] == ["v0002", *names[-2:]]
    assert registry.open_verified("v0002").is_dir()  # a kept version still verifies
    with pytest.raises(VersionNotFoundError):
        registry.manifest("v0001")
    assert not [path for path in registry.root.iterdir() if path.name.startswith(".")]
    assert publish(registry, 9) == "v0007"  # numbers never go back
    assert registry.prune(keep_newest=3, protected=set()) == ["v0002"]


def test_pruning_needs_something_kept_and_an_empty_registry_is_fine(
    registry: LocalModelRegistry,
) -> None:
    assert registry.prune(keep_newest=1, protected=set()) == []
    with pytest.raises(ValueError, match="keep_newest"):
        registry.prune(keep_newest=0, protected=set())
