"""The C encoder of a compact decision's items writes exactly the bytes Python writes:
shown items and pool items, both layouts, odd ids, big positions and versions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedrank.core.decision_items import NATIVE
from feedrank.core.decision_wire import UnshownPool, encode_decision
from feedrank.explore.queries import RankedPost
from feedrank.v1 import events_pb2
from tests.unit.core.test_decision_wire import at_posts_time, header
from tests.unit.models.factories import make_posts


def test_the_native_encoder_is_built_by_make() -> None:
    assert NATIVE is not None, "feedrank.core._decision_items is missing: `make native` builds it"


native = pytest.mark.skipif(NATIVE is None, reason="test_the_native_encoder_is_built_by_make")

post_ids = st.text(st.characters(codec="utf-8"), max_size=40)  # any string UTF-8 can hold


@native
@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(post_ids, min_size=0, max_size=60),
    first_position=st.sampled_from([0, 100, 20_000, 2**40]),
    version_bits=st.sampled_from([1, 7, 14, 41, 62]),
    with_pool=st.booleans(),
    at_decision_time=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_native_and_python_write_the_same_bytes(
    ids: list[str],
    first_position: int,
    version_bits: int,
    with_pool: bool,
    at_decision_time: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    shown = len(ids) // 2
    posts = make_posts(rng, shown)
    items = [
        RankedPost(
            post_id=ids[row],
            position=first_position + row,
            score=float(rng.normal()),
            propensity=float(rng.uniform(1e-9, 1.0)),
        )
        for row in range(shown)
    ]
    versions = rng.integers(1, 2**version_bits, size=shown, dtype=np.int64, endpoint=True)
    pool = None
    if with_pool:
        unshown = len(ids) - shown
        pool = UnshownPool(
            posts=make_posts(rng, unshown),
            post_ids=ids[shown:],
            scores=rng.normal(size=unshown).tolist(),
            catalogue_versions=rng.integers(
                1, 2**version_bits, size=unshown, dtype=np.int64, endpoint=True
            ),
        )
    decision = at_posts_time(header()) if at_decision_time else header()
    written_natively = encode_decision(decision, posts, items, versions, pool)
    assert written_natively == encode_decision(decision, posts, items, versions, pool, native=None)
    parsed = events_pb2.Decision.FromString(written_natively)
    assert [item.post_id for item in parsed.items] == ids[:shown]
    assert [item.catalogue_version for item in parsed.items] == versions.tolist()


def shown(items: list[object], values: object, codes: object, versions: object) -> object:
    assert NATIVE is not None
    return NATIVE.encode_shown(0x4A, items, b"P", values, codes, 0x30, versions)  # type: ignore[arg-type]


def pool(ids: list[object], scores: list[object], values: object, versions: object) -> object:
    assert NATIVE is not None
    return NATIVE.encode_pool(0x62, ids, scores, b"P", values, None, 0x30, versions)  # type: ignore[arg-type]


@native
def test_mismatched_columns_and_odd_items_are_refused_clearly() -> None:
    values = np.zeros((2, 3), dtype=np.float32)
    codes = np.zeros(2, dtype=np.uint8)
    versions = np.ones(2, dtype=np.int64)
    item = RankedPost(post_id="a", position=0, score=0.5, propensity=1.0)
    with pytest.raises(ValueError, match="want 2 rows of float32 values, got 20 bytes"):
        shown([item, item], np.zeros(5, dtype=np.float32), codes, versions)
    with pytest.raises(ValueError, match="want 2 one-byte codes, got 1"):
        shown([item, item], values, codes[:1], versions)
    with pytest.raises(ValueError, match="want 2 int64 versions"):
        shown([item, item], values, codes, versions[:1])
    with pytest.raises(ValueError, match="needs its id and score"):
        pool(["a", "b"], [0.5], values, versions)
    with pytest.raises(ValueError, match="negative position"):
        shown([item, replace(item, position=-1)], values, codes, versions)
    with pytest.raises(TypeError, match="not a str"):
        pool(["a", b"b"], [0.5, 0.5], values, versions)
    with pytest.raises(AttributeError, match="post_id"):
        shown([item, object()], values, codes, versions)
    with pytest.raises(TypeError):
        pool(["a", "b"], [0.5, "x"], values, versions)
    with pytest.raises(ValueError, match="not C-contiguous"):  # a strided view
        pool(["a", "b"], [0.5, 0.5], values, np.ones(4, dtype=np.int64)[::2])


@native
def test_an_unversioned_post_leaves_the_decision_to_python() -> None:
    values = np.zeros((2, 1), dtype=np.float32)
    item = RankedPost(post_id="a", position=0, score=0.5, propensity=1.0)
    assert shown([item, item], values, None, np.array([3, 0], dtype=np.int64)) is None
    assert pool(["a", "b"], [0.5, 0.5], values, np.array([-1, 3], dtype=np.int64)) is None


@native
def test_no_items_are_no_bytes() -> None:
    empty, no_values = np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.float32)
    assert shown([], no_values, np.zeros(0, dtype=np.uint8), empty) == b""
    assert pool([], [], no_values, empty) == b""
