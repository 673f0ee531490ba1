"""Loading a registry version: everything is verified, anything wrong is refused."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from feedrank.core.feature_schema import FloatArray, IntArray
from feedrank.core.time_units import DAY_MS
from feedrank.explore.catalogue import Catalogue
from feedrank.explore.errors import ModelRefused
from feedrank.explore.model_checks import CheckWindow, ann_recall
from feedrank.explore.serving_model import ServingModel
from feedrank.features.store import InMemoryFeatureStore
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig
from feedrank.registry import LocalModelRegistry, ModelBundle
from feedrank.registry.bundle import EMBEDDINGS_FILE, INDEX_DIR, RANKER_FILE, TWO_TOWER_FILE
from feedrank.simulate.world.catalogue import catalogue_from_world
from tests.support.model_versions import DIM, index_of, publish, small_bundle, writable
from tests.unit.explore.conftest import START_MS, SwapWorld


def test_a_good_version_loads_with_its_own_index(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    bundle = small_bundle(swap_world.posts, seed=1)
    version = publish(registry, bundle)

    model = swap_world.loader(registry).load(version)

    assert model.version == version
    assert len(model.index) == swap_world.world.num_posts
    np.testing.assert_array_equal(model.index.vectors(bundle.post_index), bundle.post_vectors)
    user = swap_world.store.user_features("u1", swap_world.clock.now_ms())
    vector = model.two_tower.encode_users([user])[0]
    # The served user tower is the packed form: the same vector to float32 rounding.
    np.testing.assert_allclose(
        vector, bundle.two_tower.encode_users([user])[0], rtol=1e-5, atol=1e-6
    )


def test_a_shipped_index_is_loaded_rather_than_built(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    bundle = small_bundle(swap_world.posts, seed=2)
    version = publish(registry, bundle, index=index_of(bundle, swap_world.catalogue))
    assert (registry.open_verified(version) / INDEX_DIR / "index.json").is_file()
    assert swap_world.loader(registry).load(version).version == version


def refusal(swap_world: SwapWorld, registry: LocalModelRegistry, version: str) -> ModelRefused:
    with pytest.raises(ModelRefused) as raised:
        swap_world.loader(registry).load(version)
    assert raised.value.version == version
    return raised.value


def test_a_flipped_byte_is_refused(swap_world: SwapWorld, registry: LocalModelRegistry) -> None:
    version = publish(registry, small_bundle(swap_world.posts, seed=1))
    target = writable(registry.open_verified(version) / RANKER_FILE)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    error = refusal(swap_world, registry, version)
    assert error.check == "registry"
    assert "ranker.safetensors fails its checksum" in error.message


def test_a_truncated_file_is_refused(swap_world: SwapWorld, registry: LocalModelRegistry) -> None:
    version = publish(registry, small_bundle(swap_world.posts, seed=1))
    target = writable(registry.open_verified(version) / EMBEDDINGS_FILE)
    target.write_bytes(target.read_bytes()[:1000])

    error = refusal(swap_world, registry, version)
    assert error.check == "registry"
    assert "checksum" in error.message


def test_another_feature_schema_is_refused(swap_world: SwapWorld, tmp_path: Path) -> None:
    old_trainer = LocalModelRegistry(tmp_path / "registry", expected_schema_hash="old-schema")
    version = publish(old_trainer, small_bundle(swap_world.posts, seed=1))

    error = refusal(swap_world, LocalModelRegistry(tmp_path / "registry"), version)
    assert error.check == "registry"
    assert "feature schema old-schema" in error.message


class PlantedPayload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_pickle_planted_as_weights_is_refused_and_never_runs(
    swap_world: SwapWorld, registry: LocalModelRegistry, tmp_path: Path
) -> None:
    """The manifest is forged to match the pickle, so only the format check stands."""
    marker = tmp_path / "payload-ran"
    planted = pickle.dumps(PlantedPayload(marker))
    assert pickle.loads(planted) is None
    assert marker.exists()
    marker.unlink()

    def plant(directory: Path) -> None:
        (directory / TWO_TOWER_FILE).write_bytes(planted)

    version = publish(registry, small_bundle(swap_world.posts, seed=1), tamper=plant)
    error = refusal(swap_world, registry, version)
    assert error.check == "format"
    assert not marker.exists()  # …but loading never ran it


def test_a_pickle_planted_in_the_index_is_refused_and_never_runs(
    swap_world: SwapWorld, registry: LocalModelRegistry, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    bundle = small_bundle(swap_world.posts, seed=1)

    def plant(directory: Path) -> None:
        for columns in (directory / INDEX_DIR).glob("*.npz"):
            columns.write_bytes(pickle.dumps(PlantedPayload(marker)))

    version = publish(registry, bundle, index=index_of(bundle, swap_world.catalogue), tamper=plant)
    error = refusal(swap_world, registry, version)
    assert error.check == "index"
    assert not marker.exists()


def test_an_index_that_does_not_match_the_embeddings_has_poor_recall(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    """An index built from another version's vectors: every shape fits, recall does not."""
    bundle = small_bundle(swap_world.posts, seed=1)
    foreign = index_of(small_bundle(swap_world.posts, seed=2), swap_world.catalogue)
    version = publish(registry, bundle, index=foreign)

    error = refusal(swap_world, registry, version)
    assert error.check == "recall"
    assert "recall@100" in error.message


class _FixedIndex:
    """An index that returns the posts it is given, whatever the query."""

    def __init__(self, found: IntArray) -> None:
        self.found = found

    def search(self, vector: object, k: int, **_: object) -> tuple[IntArray, FloatArray]:
        return self.found[:k], np.zeros(min(k, self.found.size), dtype=np.float32)


def test_posts_tied_with_the_kth_best_count_as_hits(swap_world: SwapWorld) -> None:
    """A young model's embeddings crowd together: which of many equally close posts fill
    the last places is a tie, not an index error."""
    user = swap_world.store.user_features("u3", START_MS)
    window = CheckWindow(at_ms=START_MS, min_created_ms=0)
    rows = np.arange(len(swap_world.posts), dtype=np.int64)
    eligible = rows[window.eligible(Catalogue.snapshot(swap_world.catalogue), rows, user)]
    assert eligible.size > 20
    query = np.zeros(4, dtype=np.float32)
    query[0] = 1.0
    vectors = np.zeros((rows.size, 4), dtype=np.float32)
    vectors[:, 1] = 1.0  # every post equally far from the query ...
    vectors[eligible[:5]] = query  # ... but five, the clear best
    tied_others = np.concatenate([eligible[:5], eligible[-5:]])  # the best, then any ties

    def recall(found: IntArray) -> float:
        model = typing.cast(ServingModel, SimpleNamespace(index=_FixedIndex(found)))
        return ann_recall(
            model,
            [user],
            query[None, :],
            embedded=(rows, vectors),
            catalogue=Catalogue.snapshot(swap_world.catalogue),
            window=window,
            k=10,
        )

    assert recall(tied_others) == 1.0
    assert recall(eligible[-10:]) == 0.5  # the five best missed
    assert recall(np.array([10**9] * 10, dtype=np.int64)) == 0.0  # posts it never embedded


def test_versions_are_checked_at_the_time_serving_is_at(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    """Requests may carry times far ahead of the service's own clock (a simulator's);
    the store then no longer answers for the clock's time, so the checks use the store's."""
    store = InMemoryFeatureStore(catalogue_from_world(swap_world.world))
    ahead_ms = START_MS + 3 * DAY_MS
    store.record_impressions(np.arange(50, dtype=np.int64), START_MS + 10)
    store.record_engagements("u3", np.array([4], dtype=np.int64), START_MS + 20)
    store.post_features(np.arange(5, dtype=np.int64), ahead_ms)  # serving moved on ...
    store.user_features("u3", ahead_ms)
    assert store.present_ms() == ahead_ms  # ... while the clock still says START_MS
    version = publish(registry, small_bundle(swap_world.posts, seed=1))
    loader = dataclasses.replace(swap_world, store=store).loader(registry)
    assert loader.load(version).version == version


def test_the_recall_threshold_is_a_setting(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    bundle = small_bundle(swap_world.posts, seed=1)
    foreign = index_of(small_bundle(swap_world.posts, seed=2), swap_world.catalogue)
    version = publish(registry, bundle, index=foreign)
    assert swap_world.loader(registry, recall_threshold=0.0).load(version).version == version


def shuffled_ids(bundle: ModelBundle, seed: int) -> ModelBundle:
    """The bundle as a learner that met the posts in another order writes it: its rows
    0..n-1 name the posts of a permutation of this catalogue's rows, by id."""
    order = np.random.default_rng(seed).permutation(bundle.post_index.size)
    ids = tuple(f"p{int(row)}" for row in bundle.post_index[order])
    learner_rows = np.arange(order.size, dtype=np.int64)
    return ModelBundle(
        bundle.two_tower, bundle.ranker, learner_rows, bundle.post_vectors[order], ids
    )


@pytest.mark.parametrize("shipped_index", [False, True])
def test_a_version_from_a_learner_with_other_rows_is_mapped_by_post_id(
    swap_world: SwapWorld, registry: LocalModelRegistry, shipped_index: bool
) -> None:
    original = small_bundle(swap_world.posts, seed=1)
    bundle = shuffled_ids(original, seed=3)
    learner_index = None
    if shipped_index:  # the learner's index names posts by the learner's rows
        ours = np.array([int(post_id[1:]) for post_id in bundle.ids()], dtype=np.int64)
        learner_index = CandidateIndex.build(
            bundle.post_index,
            bundle.post_vectors,
            languages=swap_world.posts.language[ours],
            countries=swap_world.posts.country[ours],
            region_locked=swap_world.posts.region_locked[ours],
            created_ms=swap_world.catalogue.post_column("created_ms")[ours],
            config=RetrievalConfig(dim=DIM, build_threads=1),
        )
    version = publish(registry, bundle, index=learner_index)

    model = swap_world.loader(registry).load(version)

    rows = original.post_index
    np.testing.assert_array_equal(model.index.vectors(rows), original.post_vectors)
    assert len(model.index) == rows.size
    user = swap_world.store.user_features("u1", swap_world.clock.now_ms())
    vector = model.two_tower.encode_users([user])[0]
    found, _ = model.index.exact_search(
        vector,
        5,
        languages=[user.language],
        country=user.country,
        min_created_ms=0,
        max_created_ms=swap_world.clock.now_ms(),
    )
    expected = original.post_vectors[found] @ vector
    np.testing.assert_allclose(np.sort(expected)[::-1], expected, rtol=1e-5)


def test_posts_a_version_has_not_seen_are_embedded_and_unknown_ones_dropped(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    full = small_bundle(swap_world.posts, seed=1)
    half = full.post_index.size // 2
    ids = (*[f"p{row}" for row in range(half)], "gone-1", "gone-2")
    vectors = np.concatenate([full.post_vectors[:half], full.post_vectors[:2]])
    rows = np.arange(half + 2, dtype=np.int64)
    bundle = ModelBundle(full.two_tower, full.ranker, rows, vectors, ids)

    model = swap_world.loader(registry).load(publish(registry, bundle))

    assert len(model.index) == full.post_index.size  # every live post, and nothing else
    unseen = full.post_index[half:]
    np.testing.assert_allclose(model.index.vectors(unseen), full.post_vectors[half:], atol=1e-5)


def test_an_unknown_version_is_refused(swap_world: SwapWorld, registry: LocalModelRegistry) -> None:
    assert "no version v0042" in refusal(swap_world, registry, "v0042").message
