"""The Decision's encoder: its protobuf wire bytes, written straight from the feature columns.

:mod:`feedrank.core.codecs` decodes every event (``decode_decision``) and encodes all
the others; the Decision, logged once per Rank call, is encoded here, fast. Building a
``Decision`` message item by item costs about a millisecond per Rank call (50 shown
items, a dozen map entries and a 32-float embedding each, all inserted one by one
through the protobuf runtime), more than serialising it. This module writes the same
protobuf wire format directly, from numpy structured arrays over all items and a few
precomputed byte strings. A message's encoding followed by more fields of the same
message parses as their merge, so the decision is its header (every field but
``items``, serialised by protobuf) followed by the items::

    from feedrank.core.decision_wire import encode_decision

    payload = encode_decision(header, shown_posts, ranked_items, catalogue_versions)

With ``catalogue_versions`` (each post's catalogue version, read with its features:
``FeatureStore.versioned_post_features``) the decision is **compact**, what explore
logs by default: each item carries its post's version and only the impression's
dynamic features as ``features.values``, named once by ``item_feature_names``
(:mod:`feedrank.core.compact_features`: the layout ``@post_values_1`` when the posts
are as of the decision time, whose ``age_hours`` the re-join derives; else every
:data:`~feedrank.core.feature_schema.DYNAMIC_POST_FEATURES`, named); the learners
re-join the static ones from the catalogue (docs/contracts.md). About 58 bytes an item
instead of 440. Without them (or for a post whose version is not positive) an item
carries all its features, as :meth:`PostFeatureBatch.to_protos` builds them. The
header's user features are the caller's (explore logs them compact too:
:func:`~feedrank.core.compact_features.logged_user_features`).

Compact items, where every one has a version, are written by a C encoder where it is
built (:mod:`feedrank.core.decision_items`: 50 items in a seventh of the time); the Python
below writes the same bytes otherwise. The bytes parse to exactly the message the
protobuf runtime would build
(``tests/unit/core/test_decision_wire.py`` checks it field by field); only the order
of map entries may differ, which protobuf does not define.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from feedrank.core.compact_features import POST_VALUES_LAYOUT, ItemLayout, item_layout
from feedrank.core.decision_items import NATIVE, ItemsEncoder
from feedrank.core.feature_schema import (
    CONTENT_DIM,
    COUNTRIES,
    COUNTRY_VOCABULARY,
    DYNAMIC_POST_FEATURES,
    LANGUAGE_VOCABULARY,
    LANGUAGES,
    LOGGED_POST_NUMERIC,
    TOPIC_FEATURES,
    IntArray,
    PostFeatureBatch,
    country_codes,
)
from feedrank.core.protobuf_wire import DOUBLE, I64, LEN, VARINT, length_delimited, tag, varint
from feedrank.v1 import events_pb2


class ShownItemFields(Protocol):
    """What the log needs of a shown item besides its features."""

    @property
    def post_id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def propensity(self) -> float: ...


def _double_entry_prefix(key: str) -> bytes:
    """A ``map<string, double>`` entry of FeatureVector.numeric up to its 8 value bytes."""
    name = key.encode()
    entry_length = len(length_delimited(1, name)) + 1 + DOUBLE.size
    return tag(1, LEN) + varint(entry_length) + length_delimited(1, name) + tag(2, I64)


def _string_entry(field: int, key: str, value: str) -> bytes:
    """A whole ``map<string, string>`` entry (FeatureVector.categorical is field 2)."""
    entry = length_delimited(1, key.encode()) + length_delimited(2, value.encode())
    return length_delimited(field, entry)


_EMBEDDING_PREFIX = tag(3, LEN) + varint(CONTENT_DIM * 4)  # packed repeated float
_FIXED = np.dtype(
    [
        field
        for index, name in enumerate(LOGGED_POST_NUMERIC)
        for field in (
            (f"prefix_{index}", f"S{len(_double_entry_prefix(name))}"),
            (name, "<f8"),
        )
    ]
    + [("embedding_prefix", f"S{len(_EMBEDDING_PREFIX)}"), ("embedding", "<f4", (CONTENT_DIM,))]
)
_TOPIC_PREFIXES = tuple(_double_entry_prefix(name) for name in TOPIC_FEATURES)
_LANGUAGE_ENTRIES = tuple(_string_entry(2, "language", code) for code in LANGUAGES)
_COUNTRY_ENTRIES = tuple(_string_entry(2, "country", code) for code in COUNTRIES)


def _language_entry(code: int) -> bytes:
    """The logged language of an interned code (precomputed for the schema's own)."""
    if code < len(_LANGUAGE_ENTRIES):
        return _LANGUAGE_ENTRIES[code]
    return _string_entry(2, "language", LANGUAGE_VOCABULARY.code(code))


def _country_entry(code: int) -> bytes:
    if code < len(_COUNTRY_ENTRIES):
        return _COUNTRY_ENTRIES[code]
    return _string_entry(2, "country", COUNTRY_VOCABULARY.code(code))


_ITEM_TAG = tag(9, LEN)  # Decision.items
_POOL_TAG = tag(12, LEN)  # Decision.pool
# ShownItem: post_id = 1, position = 2, score = 3, propensity = 4, features = 5,
# catalogue_version = 6.
_POST_ID_TAG, _POSITION_TAG, _FEATURES_TAG = tag(1, LEN), tag(2, VARINT), tag(5, LEN)
_VERSION_TAG = tag(6, VARINT)
_SCORE_AND_PROPENSITY = struct.Struct("<BdBd")  # each tag is one byte, then a double
_SCORE = struct.Struct("<Bd")
_SCORE_TAG, _PROPENSITY_TAG = 3 << 3 | I64, 4 << 3 | I64


_COUNTRY_CODE_TAG = tag(6, VARINT)  # FeatureVector.country_code
assert len(COUNTRIES) < 0x80, "a country code is a one-byte varint"  # country_codes' range


@dataclass(frozen=True)
class UnshownPool:
    """The exploration pool's items a decision did not show (``Decision.pool``): row i
    of ``posts`` is post ``post_ids[i]``, with the logging list's ``scores[i]`` and, for a
    compact decision, catalogue version ``catalogue_versions[i]``."""

    posts: PostFeatureBatch
    post_ids: Sequence[str]
    scores: Sequence[float]
    catalogue_versions: IntArray | None = None

    def __post_init__(self) -> None:
        if not len(self.posts) == len(self.post_ids) == len(self.scores):
            raise ValueError("an unshown pool needs one id and one score per post")


@dataclass(frozen=True)
class _CompactItems:
    """How compact items log their dynamic features: ``names``, the encoded
    ``item_feature_names``, and ``layout``, what they name. Each item's ``features`` field
    is a fixed-width numpy row: its tag and length and FeatureVector.values' (``prefix``),
    the values, and with the layout's country code field its tag and one-byte value."""

    names: bytes
    layout: ItemLayout
    prefix: bytes

    @classmethod
    def naming(cls, names: Sequence[str]) -> _CompactItems:
        layout = item_layout(names)
        count = len(layout.values)
        packed = tag(4, LEN) + varint(4 * count)  # packed repeated float
        length = len(packed) + 4 * count + (2 if layout.country_code_field else 0)
        return cls(
            names=b"".join(length_delimited(11, name.encode()) for name in names),
            layout=layout,
            prefix=_FEATURES_TAG + varint(length) + packed,
        )

    def features(self, posts: PostFeatureBatch) -> list[bytes]:
        """Each post's encoded ``features`` field."""
        values, codes = self.columns(posts)
        columns = [("prefix", f"S{len(self.prefix)}"), ("values", "<f4", (values.shape[1],))]
        if codes is not None:
            columns += [("country_tag", "S1"), ("country_code", "u1")]
        compact = np.empty(len(posts), dtype=np.dtype(columns))
        compact["prefix"] = self.prefix
        compact["values"] = values
        if codes is not None:
            compact["country_tag"] = _COUNTRY_CODE_TAG
            compact["country_code"] = codes
        width, block = compact.dtype.itemsize, compact.tobytes()
        return [block[at * width : (at + 1) * width] for at in range(len(posts))]

    def columns(
        self, posts: PostFeatureBatch
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8] | None]:
        """What each post's ``features`` field holds after the prefix: its values (float32,
        a C-contiguous row per post) and, with the layout's country code field, its code."""
        values = posts.dynamic_values(self.layout.values)
        if not self.layout.country_code_field:
            return values, None
        return values, country_codes(posts.country).astype(np.uint8)


# Posts as of the decision time: the schema's layout, whose age_hours the re-join derives.
# Posts of another time (not what explore logs): every dynamic feature, named.
_LAYOUT_ITEMS = _CompactItems.naming([POST_VALUES_LAYOUT])
_NAMED_ITEMS = _CompactItems.naming(DYNAMIC_POST_FEATURES)


def encode_decision(
    header: events_pb2.Decision,
    posts: PostFeatureBatch,
    items: Sequence[ShownItemFields],
    catalogue_versions: IntArray | None = None,
    pool: UnshownPool | None = None,
    *,
    native: ItemsEncoder | None = NATIVE,
) -> bytes:
    """``header`` (a Decision without items) with ``items`` shown, ``posts`` row i being
    the features of item i, as protobuf bytes; compact with ``catalogue_versions`` (row i:
    the version of post i's static features in ``posts``). ``pool``: the exploration
    pool's unshown items (``Decision.pool``), compact exactly when the items are.
    ``native``: the C encoder of compact items (:mod:`feedrank.core.decision_items`;
    None: Python writes them, the same bytes)."""
    if header.items or header.item_feature_names or header.pool:
        raise ValueError("the header must not carry items or their names: they are encoded here")
    if len(items) != len(posts):
        raise ValueError(f"{len(items)} items but features of {len(posts)} posts")
    if pool is not None and (pool.catalogue_versions is None) != (catalogue_versions is None):
        raise ValueError("the pool is compact exactly when the shown items are")
    encoded = [header.SerializeToString(deterministic=True)]
    if catalogue_versions is None:
        features, versions = _full_features(posts)
        layout = None
    else:
        if catalogue_versions.shape != (len(posts),):
            raise ValueError(
                f"want {len(posts)} catalogue versions, got {catalogue_versions.shape}"
            )
        at_decision_time = posts.as_of_ms == header.event_time_ms
        layout = _LAYOUT_ITEMS if at_decision_time else _NAMED_ITEMS
        encoded.append(layout.names)
        if native is not None:
            shown = _native_items(native, layout, posts, items, catalogue_versions)
            unshown = b"" if pool is None else _native_pool(native, layout, pool)
            if shown is not None and unshown is not None:
                return b"".join((*encoded, shown, unshown))
        features, versions = _compact_features(posts, catalogue_versions, layout)
    encoded += _shown_items(items, features, versions)
    if pool is not None and len(pool.posts):
        encoded += _pool_items(pool, layout)
    return b"".join(encoded)


def _native_items(
    native: ItemsEncoder,
    layout: _CompactItems,
    posts: PostFeatureBatch,
    items: Sequence[ShownItemFields],
    versions: IntArray,
) -> bytes | None:
    """The shown items, compact, written by the C encoder; None if a post has no version."""
    values, codes = layout.columns(posts)
    return native.encode_shown(
        _ITEM_TAG[0],
        items,
        layout.prefix,
        values,
        codes,
        _COUNTRY_CODE_TAG[0],
        np.ascontiguousarray(versions, np.int64),
    )


def _native_pool(native: ItemsEncoder, layout: _CompactItems, pool: UnshownPool) -> bytes | None:
    """The pool's items, compact, written by the C encoder; None if a post has no version."""
    if pool.catalogue_versions is None or not len(pool.posts):
        return b""
    values, codes = layout.columns(pool.posts)
    return native.encode_pool(
        _POOL_TAG[0],
        pool.post_ids,
        pool.scores,
        layout.prefix,
        values,
        codes,
        _COUNTRY_CODE_TAG[0],
        np.ascontiguousarray(pool.catalogue_versions, np.int64),
    )


def _full_features(posts: PostFeatureBatch) -> tuple[list[bytes], list[int]]:
    """Each post's encoded ``features`` field, whole (no catalogue version)."""
    features = [_FEATURES_TAG + varint(len(full)) + full for full in feature_vectors(posts)]
    return features, [0] * len(posts)


def _shown_items(
    items: Sequence[ShownItemFields], features: list[bytes], versions: list[int]
) -> list[bytes]:
    encoded: list[bytes] = []
    pack_scores = _SCORE_AND_PROPENSITY.pack
    for item, item_features, version in zip(items, features, versions, strict=True):
        post = item.post_id.encode()
        shown = b"".join(
            (
                _POST_ID_TAG,
                varint(len(post)),
                post,
                _POSITION_TAG,
                varint(item.position),
                pack_scores(_SCORE_TAG, item.score, _PROPENSITY_TAG, item.propensity),
                item_features,
                _VERSION_TAG + varint(version) if version > 0 else b"",
            )
        )
        encoded += (_ITEM_TAG, varint(len(shown)), shown)
    return encoded


def _pool_items(pool: UnshownPool, layout: _CompactItems | None) -> list[bytes]:
    """The pool's items (``Decision.pool``): a shown item's fields but position and
    propensity, features as the shown items have them (whole, or by ``layout``)."""
    if layout is None or pool.catalogue_versions is None:
        features, versions = _full_features(pool.posts)
    else:
        features, versions = _compact_features(pool.posts, pool.catalogue_versions, layout)
    encoded: list[bytes] = []
    pack_score = _SCORE.pack
    for post_id, score, item_features, version in zip(
        pool.post_ids, pool.scores, features, versions, strict=True
    ):
        post = post_id.encode()
        unshown = b"".join(
            (
                _POST_ID_TAG,
                varint(len(post)),
                post,
                pack_score(_SCORE_TAG, float(score)),
                item_features,
                _VERSION_TAG + varint(version) if version > 0 else b"",
            )
        )
        encoded += (_POOL_TAG, varint(len(unshown)), unshown)
    return encoded


def _compact_features(
    posts: PostFeatureBatch, versions: IntArray, layout: _CompactItems
) -> tuple[list[bytes], list[int]]:
    """Each item's encoded ``features`` field (tag included): the dynamic values of
    ``layout`` where its post has a version, all features (``catalogue_version`` left 0)
    where it has none."""
    features = layout.features(posts)
    listed: list[int] = versions.tolist()
    unversioned = [row for row, version in enumerate(listed) if version <= 0]
    if unversioned:
        rows = np.array(unversioned, dtype=np.int64)
        for row, full in zip(unversioned, feature_vectors(posts.take(rows)), strict=True):
            features[row] = _FEATURES_TAG + varint(len(full)) + full
    return features, [max(version, 0) for version in listed]


def feature_vectors(posts: PostFeatureBatch) -> list[bytes]:
    """Each post's features as an encoded ``FeatureVector``."""
    fixed = np.empty(len(posts), dtype=_FIXED)
    for index, name in enumerate(LOGGED_POST_NUMERIC):
        fixed[f"prefix_{index}"] = _double_entry_prefix(name)
        fixed[name] = getattr(posts, name)
    fixed["embedding_prefix"] = _EMBEDDING_PREFIX
    fixed["embedding"] = posts.content
    width = _FIXED.itemsize
    block = fixed.tobytes()
    rows, columns = np.nonzero(posts.topics)
    weights = np.asarray(posts.topics[rows, columns], dtype="<f8").tobytes()
    topics: list[list[bytes]] = [[] for _ in range(len(posts))]
    for entry, (row, column) in enumerate(zip(rows.tolist(), columns.tolist(), strict=True)):
        topics[row].append(_TOPIC_PREFIXES[column] + weights[entry * 8 : entry * 8 + 8])
    languages, countries = posts.language.tolist(), posts.country.tolist()
    return [
        b"".join(
            (
                block[row * width : (row + 1) * width],
                *topics[row],
                _language_entry(languages[row]),
                _country_entry(countries[row]),
            )
        )
        for row in range(len(posts))
    ]
