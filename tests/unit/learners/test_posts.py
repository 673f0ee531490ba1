"""The post catalogue keeps the latest features, by id across restarts; the ANN index
updates incrementally and names its posts by id too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from feedrank.core.feature_schema import post_id, post_keys
from feedrank.learners.post_ids import PostIds
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from feedrank.models.two_tower import TwoTowerModel
from feedrank.simulate.world import WorldConfig, generate_world
from feedrank.simulate.world_views import world_catalogue
from tests.unit.learners.factories import simulated_batches, small_two_tower

START_MS = 1_764_000_000_000


def test_latest_features_win_and_indexing_is_incremental() -> None:
    batches = simulated_batches()
    catalogue = PostCatalogue()
    catalogue.update(batches[0].posts, batches[0].decision_time_ms)
    catalogue.update(batches[1].posts, batches[1].decision_time_ms)
    known = np.unique(np.concatenate([b.posts.post_index for b in batches[:2]]))
    assert len(catalogue) == known.size
    last = batches[1].posts
    row = int(np.flatnonzero(last.post_index == last.post_index[-1])[-1])
    features = catalogue.features()
    slot = int(np.flatnonzero(features.post_index == last.post_index[-1])[0])
    assert features.impressions[slot] == last.impressions[row]

    tower = TwoTowerModel(small_two_tower())
    index = EmbeddingIndex(tower.config.embedding_dim)
    first = index.refresh(tower, catalogue)
    assert first.changed == len(catalogue)
    assert list(first.post_ids) == catalogue.post_ids.ids(first.post_index)
    assert len(index.index) == len(catalogue)
    assert index.refresh(tower, catalogue).changed == 0  # nothing moved, nothing re-added


def test_a_catalogue_seeded_from_the_world_holds_every_post_with_its_creation_time() -> None:
    world = generate_world(
        WorldConfig(num_users=50, num_creators=20, num_posts=500, seed=3, start_ms=START_MS)
    )
    post_ids = PostIds()  # a fresh learner process
    catalogue = world_catalogue(world, START_MS, post_ids)

    assert len(catalogue) == world.num_posts
    np.testing.assert_array_equal(catalogue.features().post_index, np.arange(world.num_posts))
    assert catalogue.ids() == [post_id(row) for row in range(world.num_posts)]
    np.testing.assert_array_equal(catalogue.features().post_key, post_keys(catalogue.ids()))
    np.testing.assert_array_equal(catalogue.created_ms, world.posts.created_ms)


def string_id_catalogue(post_ids: PostIds) -> PostCatalogue:
    """Three posts with app ids."""
    batch = simulated_batches()[0].posts.take(np.arange(3, dtype=np.int64))
    ids = ["article-é-42", "b", "пост-🐈"]
    posts = dataclasses.replace(batch, post_index=post_ids.rows(ids), post_key=post_keys(ids))
    catalogue = PostCatalogue(post_ids)
    catalogue.update(posts, np.arange(3, dtype=np.int64) + START_MS)
    return catalogue


def test_a_saved_catalogue_is_restored_by_id_in_a_new_process(tmp_path: Path) -> None:
    saved = string_id_catalogue(PostIds(["taken-earlier"]))
    saved.save(tmp_path / "posts.safetensors")
    restarted = PostIds(["something", "else", "first"])  # another process's rows
    loaded = PostCatalogue.load(tmp_path / "posts.safetensors", restarted)

    assert loaded.ids() == saved.ids() == ["article-é-42", "b", "пост-🐈"]
    assert restarted.ids(loaded.features().post_index) == loaded.ids()
    np.testing.assert_array_equal(loaded.features().post_key, saved.features().post_key)
    np.testing.assert_array_equal(loaded.features().impressions, saved.features().impressions)
    np.testing.assert_array_equal(loaded.created_ms, saved.created_ms)


def test_a_catalogue_saved_before_string_ids_names_its_rows_p_row(tmp_path: Path) -> None:
    saved = string_id_catalogue(PostIds())
    path = tmp_path / "posts.safetensors"
    saved.save(path)
    arrays = {
        name: value
        for name, value in load_file(str(path)).items()
        if name not in ("post_key", "post_id_utf8", "post_id_ends")
    }
    arrays["post_index"] = np.array([7, 3, 12], dtype=np.int64)  # rows were the ids then
    save_file(arrays, str(path))
    loaded = PostCatalogue.load(path, PostIds())
    assert loaded.ids() == ["p7", "p3", "p12"]
    np.testing.assert_array_equal(loaded.features().post_key, post_keys(["p7", "p3", "p12"]))


def test_published_embeddings_name_each_post_by_id(tmp_path: Path) -> None:
    catalogue = string_id_catalogue(PostIds(["unrelated"]))
    tower = TwoTowerModel(small_two_tower())
    refreshed = EmbeddingIndex(tower.config.embedding_dim).refresh(tower, catalogue)
    assert refreshed.post_ids == ("article-é-42", "b", "пост-🐈")
    assert refreshed.post_index.tolist() == [1, 2, 3]  # the learner's rows, the index labels


def test_posts_in_the_models_other_language_or_country_still_publish() -> None:
    """Examples carry the models' codes: "other" is one past the schema's. The index takes
    the vocabulary's: an "other" country is filed under ZZ (explore rewrites it at load),
    and an "other" language is left to explore, which adds it under its own language."""
    from feedrank.core.feature_schema import (  # noqa: PLC0415
        COUNTRIES,
        LANGUAGES,
    )

    batch = simulated_batches()[0]
    posts = batch.posts
    country, language = posts.country.copy(), posts.language.copy()
    country[0], language[1] = len(COUNTRIES), len(LANGUAGES)
    catalogue = PostCatalogue()
    catalogue.update(
        dataclasses.replace(posts, country=country, language=language), batch.decision_time_ms
    )

    tower = TwoTowerModel(small_two_tower())
    index = EmbeddingIndex(tower.config.embedding_dim)
    refreshed = index.refresh(tower, catalogue)

    features = catalogue.features()
    other_language = int(features.post_index[features.language == len(LANGUAGES)][0])
    other_country = int(features.post_index[features.country == len(COUNTRIES)][0])
    in_index = set(index.index.post_indices().tolist())
    assert other_language not in in_index
    assert other_country in in_index
    assert other_language in refreshed.post_index.tolist()  # its vector still ships
    assert refreshed.changed == len(catalogue) - 1
