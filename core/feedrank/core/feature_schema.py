"""The feature schema: what the models see of a user and of a post, in one place.

Serving, the feature store, the learners and the simulator all use these types. The
schema hash goes into every model manifest, so a model trained on one schema is never
served against another.

Post features are columnar (:class:`PostFeatureBatch`): one numpy array per feature,
one row per post, so ranking 1,000 candidates is a handful of array operations.
Posts are addressed by their row in a process's catalogue (``post_index``): rows are
dense and local to the process that interned the ids (a learner's rows are not a
server's). What the models see of a post's identity is ``post_key``, a stable 64-bit
key of its string id (:func:`post_key`), the same in every process and on every machine.

A decision logs each shown post's features split in two (docs/contracts.md):
:data:`STATIC_POST_FEATURES` belong to the post's catalogue version (what its latest
upsert said) and are re-joined by the learners from the catalogue by (post id, version);
:data:`DYNAMIC_POST_FEATURES` are the impression's own values and stay logged (but
``age_hours``, derived from the version's ``created_ms`` and the decision time).
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from feedrank.core.time_units import HOUR_MS
from feedrank.v1 import events_pb2

LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "fr", "de", "hi", "ja", "ar")
COUNTRIES: tuple[str, ...] = ("US", "BR", "IN", "GB", "DE", "FR", "JP", "MX", "ES", "EG")
AGE_BUCKETS = 6  # 13-17, 18-24, 25-34, 35-44, 45-54, 55+
NUM_TOPICS = 32
CONTENT_DIM = 32  # stands in for a pre-trained text/image embedding
TOPIC_FEATURES: tuple[str, ...] = tuple(f"topic_{i}" for i in range(NUM_TOPICS))
"""Names of the topic weights in a logged ``FeatureVector`` (only non-zero ones are logged)."""
AFFINITY_FEATURES: tuple[str, ...] = tuple(f"affinity_{i}" for i in range(NUM_TOPICS))
"""Names of a user's topic affinities in a logged ``FeatureVector`` (non-zero ones only)."""


class Vocabulary:
    """String codes interned to dense ints, the seed's codes first; thread-safe to grow.

    An app may bring any language or country: the process interns each code it meets.
    The schema's codes come first, in order, so their ints are the indexes the models
    were trained with; a new code extends the vocabulary without a restart. Retrieval
    and the rules filter on the interned int; the models see every code past the seed as
    one "other" (``model_code``). Ints are meaningful inside one process only: events and
    logs always carry the codes.
    """

    def __init__(self, seed: Iterable[str]) -> None:
        self._codes: list[str] = []
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()
        for code in seed:
            self.intern(code)
        self.seeded = len(self._codes)

    def intern(self, code: str) -> int:
        """The int of ``code``, added when new."""
        index = self._index.get(code)
        if index is not None:
            return index
        with self._lock:
            index = self._index.get(code)
            if index is None:
                index = len(self._codes)
                self._codes.append(code)
                self._index[code] = index
            return index

    def get(self, code: str) -> int | None:
        """The int of ``code``, or None when it was never seen."""
        return self._index.get(code)

    def code(self, index: int) -> str:
        return self._codes[index]

    def model_code(self, index: int) -> int:
        """The index the models see: a seeded code's own, ``seeded`` ("other") else."""
        return index if index < self.seeded else self.seeded

    def __len__(self) -> int:
        return len(self._codes)


LANGUAGE_VOCABULARY = Vocabulary(LANGUAGES)
"""Every language this process has met; the models know LANGUAGES plus "other"."""
COUNTRY_VOCABULARY = Vocabulary(COUNTRIES)
"""Every country this process has met; the models know COUNTRIES plus "other"."""
_TOPIC_SLOTS = {name: slot for slot, name in enumerate(TOPIC_FEATURES)}


def stable_digest(text: str) -> int:
    """A 64-bit digest of ``text`` (blake2b of its UTF-8, little-endian), in [0, 2**64).

    The same in every process and on every machine (unlike ``hash``, which depends on
    PYTHONHASHSEED): post keys, hashed id buckets and topic slots all start from it.
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=1 << 16)
def topic_slot(name: str) -> int:
    """The topic slot of a topic name: ``topic_<i>`` (the schema's own names) is slot i,
    any other name is hashed into one of the NUM_TOPICS slots (feature hashing), so an
    app's topics need no registration."""
    slot = _TOPIC_SLOTS.get(name)
    if slot is not None:
        return slot
    return stable_digest(name) % NUM_TOPICS


FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


_INT64_WRAP = 1 << 64
_INT64_MAX = (1 << 63) - 1


def post_key(identifier: str) -> int:
    """The stable key of a post id: :func:`stable_digest` read as a signed int64.

    The models hash it into the post-id embedding, so a post finds the same bucket in
    the learner that trained on it and in every server, whatever rows they gave it.
    """
    digest = stable_digest(identifier)
    return digest - _INT64_WRAP if digest > _INT64_MAX else digest


def post_keys(identifiers: Iterable[str]) -> IntArray:
    """:func:`post_key` of each id, as an int64 array (the same bits as the uint64 digests)."""
    digests = np.fromiter((stable_digest(item) for item in identifiers), dtype=np.uint64)
    keys: IntArray = digests.view(np.int64)
    return keys


def post_id(index: int) -> str:
    """The id of a generated world's post ``index`` (apps bring their own ids)."""
    return f"p{index}"


def post_index(identifier: str) -> int:
    """The row of a generated world's post id ``p<row>``; ValueError for other ids.

    Only for the simulated world, whose ids are its rows: anything that takes app ids
    interns them (a catalogue's row is not its id)."""
    if not identifier.startswith("p") or not identifier[1:].isdigit():
        raise ValueError(f"not a feedrank post id: {identifier!r} (expected 'p<number>')")
    return int(identifier[1:])


def user_id(index: int) -> str:
    return f"u{index}"


_USER_NUMBERS = ("activity", "follow_count", "engagements_7d", "affinity_engagements")


def float32_values(values: Iterable[float]) -> tuple[float, ...]:
    """``values`` rounded to float32 (the precision of every feature the models read)."""
    return tuple(np.asarray(tuple(values), dtype=np.float32).tolist())


@dataclass(frozen=True)
class UserFeatures:
    """One user as of ``as_of_ms`` (impression time when logged with a decision).

    The numbers are float32 values, like the post columns: construction rounds them once
    (the models read float32 anyway, so their inputs are the same), which is what lets a
    compact decision log them as float32 and a learner read back exactly what the ranker
    used (:mod:`feedrank.core.compact_features`).
    """

    user_id: str
    language: int  # index into LANGUAGES
    country: int  # index into COUNTRIES
    age_bucket: int  # 0 .. AGE_BUCKETS-1
    activity: float  # log1p(sessions per day)
    follow_count: float  # log1p(accounts followed)
    engagements_7d: float  # log1p(engagements in the last 7 days)
    sensitive_filter: bool  # account setting: hide sensitive posts
    known: bool  # False for a user the store has never seen (cold start)
    as_of_ms: int
    # The topic mix of the user's engagements so far: NUM_TOPICS shares summing to 1, or
    # empty for a user with no engagement history (all zero).
    topic_affinity: tuple[float, ...] = ()
    # log1p(engagements behind topic_affinity): how much evidence the mix rests on.
    affinity_engagements: float = 0.0

    def __post_init__(self) -> None:
        if self.topic_affinity and len(self.topic_affinity) != NUM_TOPICS:
            raise ValueError(
                f"topic_affinity needs {NUM_TOPICS} values or none, got {len(self.topic_affinity)}"
            )
        rounded = float32_values([getattr(self, name) for name in _USER_NUMBERS])
        for name, value in zip(_USER_NUMBERS, rounded, strict=True):
            object.__setattr__(self, name, value)  # frozen: set once, here
        if self.topic_affinity:
            object.__setattr__(self, "topic_affinity", float32_values(self.topic_affinity))

    def to_proto(self) -> events_pb2.FeatureVector:
        affinity = {
            AFFINITY_FEATURES[topic]: share
            for topic, share in enumerate(self.topic_affinity)
            if share != 0.0
        }
        return events_pb2.FeatureVector(
            numeric={
                "age_bucket": float(self.age_bucket),
                "activity": self.activity,
                "follow_count": self.follow_count,
                "engagements_7d": self.engagements_7d,
                "affinity_engagements": self.affinity_engagements,
                "sensitive_filter": float(self.sensitive_filter),
                "known": float(self.known),
                "as_of_ms": float(self.as_of_ms),
                **affinity,
            },
            categorical={
                "language": LANGUAGE_VOCABULARY.code(self.language),
                "country": COUNTRY_VOCABULARY.code(self.country),
            },
        )


LOGGED_POST_NUMERIC: tuple[str, ...] = (
    "age_hours",
    "creator_followers",
    "creator_engagement_rate",
    "impressions",
    "engagement_rate",
    "sensitive",
    "region_locked",
    "creator_index",
)
"""The post columns a shown item logged in full logs as numbers (besides its non-zero topics)."""

STATIC_POST_FEATURES: tuple[str, ...] = (
    "language",
    "region_locked",
    "sensitive",
    "topics",
    "content",
    "created_ms",
    "creator",
)
"""What one upsert of a post fixes (``feedrank.posts``, keyed by its ``ts_ms``: the post's
catalogue version): the same in every process that applied that upsert, so a compact
decision names the version (``ShownItem.catalogue_version``) instead of copying them.
The creator is an id; its ``creator_index`` is the row of that id in the process's own
catalogue (rows are interned in arrival order), which is why it is not logged."""
DYNAMIC_POST_FEATURES: tuple[str, ...] = (
    "age_hours",
    "creator_followers",
    "creator_engagement_rate",
    "impressions",
    "engagement_rate",
    "country_code",
)
"""Values of the impression, not of the post's version: what a compact decision logs per
shown item (``FeatureVector.values``, named once by ``Decision.item_feature_names``; by
the layout of :mod:`feedrank.core.compact_features`, ``age_hours`` is derived instead:
:func:`post_age_hours`). Counts and the creator's audience move between upserts;
``country_code`` is the post country's model code (:func:`country_codes`) because a post
without its own country takes its creator's profile country, which arrives on another
topic in no set order."""


def post_age_hours(at_ms: int, created_ms: IntArray | int) -> FloatArray:
    """Hours from each post's creation to ``at_ms`` (0 for one created later), float32: the
    feature store's ``age_hours``, which a compact decision does not log (the re-join
    derives it from the post version's ``created_ms`` and the decision time, with this)."""
    elapsed = np.maximum(np.int64(at_ms) - np.asarray(created_ms, dtype=np.int64), 0)
    hours: FloatArray = (elapsed / HOUR_MS).astype(np.float32)
    return hours


def country_codes(countries: IntArray) -> IntArray:
    """The models' index of each interned country: its COUNTRIES index, or
    ``len(COUNTRIES)`` ("other") for any code past them (``Vocabulary.model_code``)."""
    codes: IntArray = np.minimum(countries, len(COUNTRIES)).astype(np.int64)
    return codes


@dataclass(frozen=True)
class PostFeatureBatch:
    """Features of many posts as of ``as_of_ms``; every array has one row per post."""

    post_index: IntArray  # catalogue rows (local to the process that interned the ids)
    post_key: IntArray  # post_key(post id): stable in every process, what the models hash
    language: IntArray  # index into LANGUAGES
    country: IntArray  # creator's country, index into COUNTRIES
    region_locked: BoolArray  # eligible only for users in ``country``
    creator_index: IntArray
    topics: FloatArray  # (n, NUM_TOPICS) topic weights, rows sum to 1
    content: FloatArray  # (n, CONTENT_DIM) content embedding
    age_hours: FloatArray  # hours since creation at as_of_ms (>= 0)
    creator_followers: FloatArray  # log1p(followers)
    creator_engagement_rate: FloatArray  # creator's historical engagement rate
    impressions: FloatArray  # log1p(impressions so far)
    engagement_rate: FloatArray  # smoothed engagements / impressions so far
    sensitive: BoolArray
    as_of_ms: int

    def __len__(self) -> int:
        return int(self.post_index.shape[0])

    def take(self, rows: IntArray) -> PostFeatureBatch:
        """The batch restricted to ``rows`` (positions in this batch), in that order."""
        values = {
            item.name: getattr(self, item.name)[rows]
            for item in fields(self)
            if item.name != "as_of_ms"
        }
        return PostFeatureBatch(**values, as_of_ms=self.as_of_ms)

    def to_protos(self) -> list[events_pb2.FeatureVector]:
        """Impression-time features of every post, for the decision log.

        Topic weights go in as ``topic_<i>`` numbers, the non-zero ones only (a post has
        a few topics of NUM_TOPICS): absent means zero. Columns are converted to Python
        once, not per row and field: this runs on the serving path for every shown item.
        """
        numeric_columns = {
            name: getattr(self, name).astype(np.float64).tolist() for name in LOGGED_POST_NUMERIC
        }
        languages = [LANGUAGE_VOCABULARY.code(code) for code in self.language.tolist()]
        countries = [COUNTRY_VOCABULARY.code(code) for code in self.country.tolist()]
        embeddings = self.content.tolist()
        topics = self._logged_topics()
        return [
            events_pb2.FeatureVector(
                numeric={
                    **{name: column[row] for name, column in numeric_columns.items()},
                    **topics[row],
                },
                categorical={"language": languages[row], "country": countries[row]},
                embedding=embeddings[row],
            )
            for row in range(len(self))
        ]

    def dynamic_values(self, names: Sequence[str] = DYNAMIC_POST_FEATURES) -> FloatArray:
        """(n, len(names)) float32 of the :data:`DYNAMIC_POST_FEATURES` ``names``: what a
        compact decision logs per item."""
        values = np.empty((len(self), len(names)), dtype=np.float32)
        for column, name in enumerate(names):
            own = country_codes(self.country) if name == "country_code" else getattr(self, name)
            values[:, column] = own
        return values

    def _logged_topics(self) -> list[dict[str, float]]:
        """Per row, ``topic_<i>`` -> weight for the non-zero topic weights."""
        rows, columns = np.nonzero(self.topics)
        weights = self.topics[rows, columns].tolist()
        logged: list[dict[str, float]] = [{} for _ in range(len(self))]
        for row, column, weight in zip(rows.tolist(), columns.tolist(), weights, strict=True):
            logged[row][TOPIC_FEATURES[column]] = weight
        return logged


USER_NUMERIC = (
    "age_bucket",
    "activity",
    "follow_count",
    "engagements_7d",
    "affinity_engagements",
    "sensitive_filter",
)
POST_NUMERIC = (
    "age_hours",
    "creator_followers",
    "creator_engagement_rate",
    "impressions",
    "engagement_rate",
    "sensitive",
)


def schema_hash() -> str:
    """A stable hash of everything a model depends on in this schema."""
    description = repr(
        (
            LANGUAGES,
            COUNTRIES,
            AGE_BUCKETS,
            NUM_TOPICS,
            CONTENT_DIM,
            USER_NUMERIC,
            POST_NUMERIC,
            [item.name for item in fields(UserFeatures)],
            [item.name for item in fields(PostFeatureBatch)],
        )
    )
    return hashlib.sha256(description.encode()).hexdigest()[:16]


def log1p(value: float) -> float:
    return math.log1p(max(value, 0.0))
