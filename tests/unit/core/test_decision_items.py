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

post_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40
)  # any string, surrogates aside (they have no UTF-8)


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
            catalogue_versions=rng.integers(1, 2**version_bits, size=unshown, endpoint=True),
        )
    decision = at_posts_time(header()) if at_decision_time else header()
    written_natively = encode_decision(decision, posts, items, versions, pool)
    assert written_natively == encode_decision(decision, posts, items, versions, pool, native=None)
    parsed = events_pb2.Decision.FromString(written_natively)
    assert [item.post_id for item in parsed.items] == ids[:shown]
    assert [item.catalogue_version for item in parsed.items] == versions.tolist()


@native
def test_mismatched_columns_and_odd_items_are_refused_clearly() -> None:
    assert NATIVE is not None
    block, width = b"\0" * 8, 4
    versions = np.ones(2, dtype=np.int64)
    item = RankedPost(post_id="a", position=0, score=0.5, propensity=1.0)
    with pytest.raises(ValueError, match="want 1 features rows of 4 bytes, got 8"):
        NATIVE.encode_shown(0x4A, [item], block, width, versions[:1])
    with pytest.raises(ValueError, match="want 2 int64 versions"):
        NATIVE.encode_shown(0x4A, [item, item], block, width, versions[:1])
    with pytest.raises(ValueError, match="needs its id and score"):
        NATIVE.encode_pool(0x62, ["a", "b"], [0.5], block, width, versions)
    with pytest.raises(ValueError, match="negative position"):
        NATIVE.encode_shown(0x4A, [item, replace(item, position=-1)], block, width, versions)
    with pytest.raises(TypeError, match="not a str"):
        NATIVE.encode_pool(0x62, ["a", b"b"], [0.5, 0.5], block, width, versions)
    with pytest.raises(AttributeError, match="post_id"):
        NATIVE.encode_shown(0x4A, [item, object()], block, width, versions)
    with pytest.raises(TypeError):
        NATIVE.encode_pool(0x62, ["a", "b"], [0.5, "x"], block, width, versions)


@native
def test_no_items_are_no_bytes() -> None:
    assert NATIVE is not None
    empty = np.zeros(0, dtype=np.int64)
    assert NATIVE.encode_shown(0x4A, [], b"", 4, empty) == b""
    assert NATIVE.encode_pool(0x62, [], [], b"", 4, empty) == b""
