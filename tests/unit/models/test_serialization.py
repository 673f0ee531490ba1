from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.serialization import (
    ModelFormatError,
    config_from_json,
    load_model,
    load_ranker,
    load_two_tower,
    read_manifest,
    save_model,
)
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from tests.unit.models.factories import AS_OF_MS, make_posts, make_user, make_users

TOWERS = TwoTowerConfig(
    embedding_dim=16,
    user_id_buckets=512,
    post_id_buckets=512,
    hidden_sizes=(32,),
    topic_dims=8,
    seed=7,
)
RANKER = RankerConfig(tower_dim=16, user_id_buckets=512, post_id_buckets=512, hidden_sizes=(32,))

UNPICKLED: list[str] = []


class Booby:
    """Unpickling this records it: proof that a loader ran pickle."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (UNPICKLED.append, ("unpickled!",))


@pytest.fixture
def towers_file(tmp_path: Path) -> Path:
    path = tmp_path / "towers.safetensors"
    save_model(TwoTowerModel(TOWERS), path)
    return path


@pytest.fixture(autouse=True)
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("torch.load must never be used")

    monkeypatch.setattr(torch, "load", refuse)


def rewrite_metadata(path: Path, **changes: str) -> None:
    """Rewrite a model file with some header metadata replaced (tensors kept)."""
    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata())
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata={**metadata, **changes})


def test_two_tower_round_trip_gives_identical_outputs(towers_file: Path) -> None:
    original = TwoTowerModel(TOWERS)
    loaded = load_two_tower(towers_file)
    rng = np.random.default_rng(0)
    users, posts = make_users(rng, 4, known=True), make_posts(rng, 30)
    assert loaded.config == TOWERS
    assert np.array_equal(original.encode_users(users), loaded.encode_users(users))
    assert np.array_equal(original.encode_posts(posts), loaded.encode_posts(posts))
    assert not loaded.training


def test_ranker_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    original = RankerModel(RANKER)
    save_model(original, tmp_path / "ranker.safetensors")
    loaded = load_ranker(tmp_path / "ranker.safetensors")
    rng = np.random.default_rng(1)
    user, posts = make_user(rng), make_posts(rng, 25)
    user_vector = rng.standard_normal(16).astype(np.float32)
    post_vectors = rng.standard_normal((25, 16)).astype(np.float32)
    expected = original.score(user, posts, user_vector, post_vectors, AS_OF_MS)
    assert np.array_equal(expected, loaded.score(user, posts, user_vector, post_vectors, AS_OF_MS))


def test_manifest_records_kind_schema_and_config(towers_file: Path) -> None:
    manifest = read_manifest(towers_file)
    assert manifest.kind == "two_tower"
    assert manifest.config == TOWERS
    assert len(manifest.schema_hash) == 16


def test_truncated_file_is_refused(towers_file: Path) -> None:
    data = towers_file.read_bytes()
    towers_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        load_model(towers_file)


def test_corrupted_header_is_refused(towers_file: Path) -> None:
    data = bytearray(towers_file.read_bytes())
    data[10:40] = b"\xff" * 30
    towers_file.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError):
        load_model(towers_file)


def test_other_schema_hash_is_refused(towers_file: Path) -> None:
    rewrite_metadata(towers_file, schema_hash="0123456789abcdef")
    with pytest.raises(ModelFormatError, match="schema"):
        load_model(towers_file)


def test_a_ranker_from_before_the_position_bias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ranker.safetensors"
    save_model(RankerModel(RANKER), path)
    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata())
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    del tensors["position_bias.weight"]
    save_file(tensors, str(path), metadata={**metadata, "encoding_version": "1"})
    with pytest.raises(ModelFormatError, match="encoding version '1'"):
        load_model(path)
    rewrite_metadata(path, encoding_version=metadata["encoding_version"])
    with pytest.raises(ModelFormatError, match="position_bias"):
        load_model(path)


def test_pickle_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": Booby()}))
    with pytest.raises(ModelFormatError):
        load_model(path)
    with pytest.raises(ModelFormatError):
        read_manifest(path)
    assert UNPICKLED == []


def test_tensors_that_do_not_match_the_config_are_refused(towers_file: Path) -> None:
    bigger = json.dumps({**asdict(TOWERS), "embedding_dim": 32})
    rewrite_metadata(towers_file, config=bigger)
    with pytest.raises(ModelFormatError, match="tensor"):
        load_model(towers_file)


def test_missing_or_extra_tensors_are_refused(towers_file: Path) -> None:
    with safe_open(str(towers_file), framework="pt") as file:
        metadata = dict(file.metadata())
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    save_file({**tensors, "stowaway": torch.zeros(3)}, str(towers_file), metadata=metadata)
    with pytest.raises(ModelFormatError, match="stowaway"):
        load_model(towers_file)


def test_non_finite_weights_are_refused(towers_file: Path) -> None:
    with safe_open(str(towers_file), framework="pt") as file:
        metadata = dict(file.metadata())
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    tensors["logit_bias"] = torch.tensor(float("nan"))
    save_file(tensors, str(towers_file), metadata=metadata)
    with pytest.raises(ModelFormatError, match="NaN"):
        load_model(towers_file)


def test_loading_the_wrong_kind_is_refused(towers_file: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a RankerModel"):
        load_ranker(towers_file)


def test_config_json_must_name_exactly_the_fields_with_their_types() -> None:
    good = json.dumps(asdict(TOWERS))
    assert config_from_json(TwoTowerConfig, good) == TOWERS
    with pytest.raises(ModelFormatError, match="unknown"):
        config_from_json(TwoTowerConfig, json.dumps({**asdict(TOWERS), "extra": 1}))
    with pytest.raises(ModelFormatError, match="wrong type"):
        config_from_json(TwoTowerConfig, json.dumps({**asdict(TOWERS), "seed": "7"}))
    with pytest.raises(ModelFormatError, match="invalid config"):
        config_from_json(TwoTowerConfig, json.dumps({**asdict(TOWERS), "id_dropout": 2.0}))


def test_a_ranker_config_from_before_an_added_field_loads_with_its_default() -> None:
    old = {name: value for name, value in asdict(RANKER).items() if name != "time_context"}

    loaded = config_from_json(RankerConfig, json.dumps(old))

    assert loaded == RANKER
    assert loaded.time_context  # the behaviour such a file was trained with
    with pytest.raises(ModelFormatError, match=r"missing \['seed'\]"):
        config_from_json(RankerConfig, json.dumps({k: v for k, v in old.items() if k != "seed"}))


def test_save_replaces_atomically_and_leaves_no_temporary_files(towers_file: Path) -> None:
    save_model(TwoTowerModel(TOWERS), towers_file)
    assert [path.name for path in towers_file.parent.iterdir()] == [towers_file.name]
