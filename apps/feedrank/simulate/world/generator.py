"""The simulated world: users, creators and posts, drawn from a seed, column by column.

A :class:`World` holds OBSERVABLE tables (what a real platform would know: a user's
language and settings, a post's topics, content embedding and creation time) and, apart
from them, :class:`HiddenParameters` (a user's true interests and a post's true
quality). No learner, policy, feature store or ranker reads ``world.hidden``: only the
behaviour model, which turns shown feeds into engagement, and its oracle methods,
labelled as such, do. Every array is read-only.

Generation is vectorised and seeded: the same :class:`WorldConfig` gives the same world,
bit for bit. Users, creators, posts and topics each draw from their own child of the
seed, so changing one table's tunables leaves the others as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import (
    CONTENT_DIM,
    COUNTRIES,
    LANGUAGES,
    NUM_TOPICS,
    BoolArray,
    FloatArray,
    IntArray,
)
from feedrank.simulate.world.config import LANGUAGE_OF_COUNTRY, WorldConfig, normalised

_CONTENT_CHUNK_ROWS = 1 << 17  # rows of content embedding made at a time (bounds memory)
_MIN_TOPIC_WEIGHT = 0.05  # keeps every used topic slot visibly above zero

ArrayT = TypeVar("ArrayT", bound=npt.NDArray[np.generic])


def _read_only(array: ArrayT) -> ArrayT:
    array.setflags(write=False)
    return array


class _Columns:
    """Shared behaviour of the columnar tables: length and memory."""

    def __len__(self) -> int:
        first = fields(self)[0].name  # type: ignore[arg-type]
        return int(getattr(self, first).shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return sum(getattr(self, item.name).nbytes for item in fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class UserTable(_Columns):
    """Observable user attributes, one row per user (``user_id(row)``)."""

    language: IntArray  # index into LANGUAGES
    country: IntArray  # index into COUNTRIES
    age_bucket: IntArray  # 0 .. AGE_BUCKETS-1
    sessions_per_day: FloatArray  # raw; UserFeatures.activity is its log1p
    follow_count: IntArray  # accounts followed; UserFeatures.follow_count is its log1p
    sensitive_filter: BoolArray  # account setting: hide sensitive posts
    history_topics: FloatArray  # (n, NUM_TOPICS) engagements per topic before the world starts


@dataclass(frozen=True, eq=False)
class CreatorTable(_Columns):
    """Observable creator attributes, one row per creator."""

    country: IntArray
    language: IntArray
    followers: IntArray
    posting_frequency: FloatArray  # posts per day
    engagement_rate: FloatArray  # historical engagements per impression (noisy)


@dataclass(frozen=True, eq=False)
class PostTable(_Columns):
    """Observable post attributes, one row per post (``post_id(row)``), in creation order."""

    creator_index: IntArray
    language: IntArray
    country: IntArray  # the creator's country
    region_locked: BoolArray  # eligible only for users in ``country``
    topics: FloatArray  # (n, NUM_TOPICS), a few topics per post, rows sum to 1
    content: FloatArray  # (n, CONTENT_DIM) unit-length embedding: topics plus noise
    created_ms: IntArray  # ascending
    sensitive: BoolArray


@dataclass(frozen=True, eq=False)
class HiddenParameters(_Columns):
    """Ground truth that only the behaviour model and its oracle may read.

    No learner, policy, feature store or ranker reads these; code that does (the
    oracle baseline, evaluation) must say so in its name or docstring.
    """

    user_interests: FloatArray  # (num_users, NUM_TOPICS), unit length
    user_bias: FloatArray  # per-user engagement propensity (logit offset)
    creator_quality: FloatArray  # standard normal
    post_quality: FloatArray  # standardised: mean 0, sd 1 over posts


@dataclass(frozen=True, eq=False)
class World:
    """A generated world: observable tables plus the hidden truth behind them."""

    config: WorldConfig
    users: UserTable
    creators: CreatorTable
    posts: PostTable
    hidden: HiddenParameters = field(repr=False)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_posts(self) -> int:
        return len(self.posts)

    @property
    def nbytes(self) -> int:
        """Bytes held by all tables, hidden parameters included."""
        tables = (self.users, self.creators, self.posts, self.hidden)
        return sum(table.nbytes for table in tables)


@dataclass(frozen=True)
class _Topics:
    """World-level topic structure shared by users and creators (never exposed)."""

    popularity: npt.NDArray[np.float64]  # (NUM_TOPICS,), sums to 1
    embeddings: FloatArray  # (NUM_TOPICS, CONTENT_DIM)


def generate_world(config: WorldConfig | None = None) -> World:
    """Draw a world from ``config`` (defaults when None); same config, same world."""
    config = config or WorldConfig()
    seeds = np.random.SeedSequence(config.seed).spawn(5)  # children 0-3 as before history
    topic_seed, user_seed, creator_seed, post_seed, history_seed = seeds
    topics = _draw_topics(config, np.random.default_rng(topic_seed))
    users, interests, user_bias = _draw_users(
        config, topics, np.random.default_rng(user_seed), np.random.default_rng(history_seed)
    )
    creators = _draw_creators(config, topics, np.random.default_rng(creator_seed))
    posts, post_quality = _draw_posts(config, topics, creators, np.random.default_rng(post_seed))
    hidden = HiddenParameters(
        user_interests=_read_only(interests),
        user_bias=_read_only(user_bias),
        creator_quality=_read_only(creators.quality),
        post_quality=_read_only(post_quality),
    )
    return World(config=config, users=users, creators=creators.table, posts=posts, hidden=hidden)


def _draw_topics(config: WorldConfig, rng: np.random.Generator) -> _Topics:
    popularity = rng.dirichlet(np.full(NUM_TOPICS, config.topic_popularity_alpha))
    embeddings = rng.standard_normal((NUM_TOPICS, CONTENT_DIM), dtype=np.float32)
    return _Topics(popularity=popularity, embeddings=embeddings)


def _dirichlet_rows(
    rng: np.random.Generator, alpha: npt.NDArray[np.float64], rows: int
) -> FloatArray:
    """``rows`` Dirichlet draws via gamma variates (stable for tiny alphas)."""
    draws = rng.standard_gamma(alpha, size=(rows, alpha.shape[0]))
    totals = draws.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0.0
    draws[empty] = 1.0  # all-underflow rows (vanishingly rare) become uniform
    totals[empty] = alpha.shape[0]
    rows_sum_to_one: FloatArray = (draws / totals).astype(np.float32)
    return rows_sum_to_one


def _lognormal(rng: np.random.Generator, median: float, sigma: float, size: int) -> FloatArray:
    return rng.lognormal(np.log(median), sigma, size).astype(np.float32)


def _languages(
    rng: np.random.Generator, country: IntArray, keep_share: float, size: int
) -> IntArray:
    """Each row's country language with probability ``keep_share``, else a random one."""
    primary = np.asarray(LANGUAGE_OF_COUNTRY, dtype=np.int64)[country]
    other = rng.integers(0, len(LANGUAGES), size=size)
    return np.where(rng.random(size) < keep_share, primary, other)


def _draw_users(
    config: WorldConfig,
    topics: _Topics,
    rng: np.random.Generator,
    history_rng: np.random.Generator,
) -> tuple[UserTable, FloatArray, FloatArray]:
    n = config.num_users
    country = rng.choice(len(COUNTRIES), size=n, p=normalised(config.country_weights))
    age_bucket = rng.choice(
        len(config.age_bucket_weights), size=n, p=normalised(config.age_bucket_weights)
    )
    sessions = _lognormal(rng, config.sessions_per_day_median, config.sessions_per_day_sigma, n)
    follows = _lognormal(rng, config.follow_count_median, config.follow_count_sigma, n)
    language = _languages(rng, country, config.primary_language_share, n)
    follow_count = np.rint(follows).astype(np.int64)
    sensitive_filter = rng.random(n) < config.sensitive_filter_share
    interests = _draw_interests(config, topics, country, age_bucket, rng)
    activity_term = np.log(sessions / config.sessions_per_day_median)
    noise = rng.normal(0.0, config.user_bias_sd, n)
    user_bias = (noise + config.user_bias_activity_weight * activity_term).astype(np.float32)
    table = UserTable(
        language=_read_only(language),
        country=_read_only(country.astype(np.int64)),
        age_bucket=_read_only(age_bucket.astype(np.int64)),
        sessions_per_day=_read_only(sessions),
        follow_count=_read_only(follow_count),
        sensitive_filter=_read_only(sensitive_filter),
        history_topics=_read_only(_draw_history(config, interests, sessions, history_rng)),
    )
    return table, interests, user_bias


def _draw_interests(
    config: WorldConfig,
    topics: _Topics,
    country: IntArray,
    age_bucket: IntArray,
    rng: np.random.Generator,
) -> FloatArray:
    """Unit-length interests: a personal mix plus the user's country x age cohort mix."""
    alpha = config.interest_alpha * NUM_TOPICS * topics.popularity
    personal = _dirichlet_rows(rng, alpha, len(country))
    buckets = len(config.age_bucket_weights)
    cohorts = _dirichlet_rows(rng, alpha, len(COUNTRIES) * buckets)
    cohort = cohorts[country * buckets + age_bucket]
    share = np.float32(config.cohort_interest_share)
    interests: FloatArray = (1 - share) * personal + share * cohort
    interests /= np.linalg.norm(interests, axis=1, keepdims=True)
    return interests


def _draw_history(
    config: WorldConfig,
    interests: FloatArray,
    sessions: FloatArray,
    rng: np.random.Generator,
) -> FloatArray:
    """Each user's engagements per topic before the world starts (e.g. on the home feed).

    Observable history, drawn from the hidden interests: a Poisson number of past
    engagements (more for more active users), each on a topic drawn with probability
    ``interests ** 2`` (a unit vector's squares sum to one). A few engagements say
    little about a user; a long history says a lot, as on a real platform.
    """
    activity = sessions.astype(np.float64) / config.sessions_per_day_median
    counts = rng.poisson(config.history_engagements_mean * activity)
    shares = interests.astype(np.float64) ** 2
    shares /= shares.sum(axis=1, keepdims=True)
    history: FloatArray = rng.multinomial(counts, shares).astype(np.float32)
    return history


@dataclass(frozen=True)
class _Creators:
    """Creators as drawn: the observable table and what only generation uses."""

    table: CreatorTable
    quality: FloatArray  # hidden
    home_topics: IntArray  # (num_creators, creator_home_topics)
    edgy: BoolArray  # often posts sensitive content


def _draw_creators(config: WorldConfig, topics: _Topics, rng: np.random.Generator) -> _Creators:
    n = config.num_creators
    country = rng.choice(len(COUNTRIES), size=n, p=normalised(config.country_weights))
    followers = _lognormal(rng, config.creator_followers_median, config.creator_followers_sigma, n)
    frequency = _lognormal(rng, config.posting_frequency_median, config.posting_frequency_sigma, n)
    quality = rng.normal(0.0, config.creator_quality_sd, n).astype(np.float32)
    gain = config.creator_rate_quality_gain / config.creator_quality_sd
    rate = config.creator_rate_base * np.exp(gain * quality)
    rate = rate + rng.normal(0.0, config.creator_rate_noise, n)
    table = CreatorTable(
        country=_read_only(country.astype(np.int64)),
        language=_read_only(_languages(rng, country, config.primary_language_share, n)),
        followers=_read_only(np.rint(followers).astype(np.int64)),
        posting_frequency=_read_only(frequency),
        engagement_rate=_read_only(
            np.clip(rate, config.creator_rate_floor, 1.0).astype(np.float32)
        ),
    )
    home_topics = rng.choice(NUM_TOPICS, size=(n, config.creator_home_topics), p=topics.popularity)
    edgy = rng.random(n) < config.sensitive_creator_share
    return _Creators(table, quality, home_topics.astype(np.int64), edgy)


def _draw_posts(
    config: WorldConfig, topics: _Topics, creators: _Creators, rng: np.random.Generator
) -> tuple[PostTable, FloatArray]:
    """Posts and their hidden quality; each creator posts in proportion to its frequency."""
    n = config.num_posts
    frequency = creators.table.posting_frequency.astype(np.float64)
    creator = rng.choice(len(frequency), size=n, p=frequency / frequency.sum()).astype(np.int64)
    language = np.where(
        rng.random(n) < config.post_language_share,
        creators.table.language[creator],
        rng.integers(0, len(LANGUAGES), size=n),
    )
    sensitive_share = np.where(
        creators.edgy[creator], config.sensitive_post_share_edgy, config.sensitive_post_share_other
    )
    post_topics = _post_topics(config, topics, creator, creators.home_topics, rng)
    created = np.sort(rng.integers(config.first_post_ms, config.last_post_ms, size=n))
    table = PostTable(
        creator_index=_read_only(creator),
        language=_read_only(language.astype(np.int64)),
        country=_read_only(creators.table.country[creator]),
        region_locked=_read_only(rng.random(n) < config.region_locked_share),
        topics=_read_only(post_topics),
        content=_read_only(_content(config, topics, post_topics, rng)),
        created_ms=_read_only(created.astype(np.int64)),
        sensitive=_read_only(rng.random(n) < sensitive_share),
    )
    spread = np.hypot(config.creator_quality_sd, config.post_quality_sd)
    noise = rng.normal(0.0, config.post_quality_sd, n)
    quality = ((creators.quality[creator] + noise) / spread).astype(np.float32)
    return table, quality


def _post_topics(
    config: WorldConfig,
    topics: _Topics,
    creator: IntArray,
    home_topics: IntArray,
    rng: np.random.Generator,
) -> FloatArray:
    """(n, NUM_TOPICS) weights: 1..max_topics_per_post topics, mostly the creator's."""
    n, slots = creator.shape[0], config.max_topics_per_post
    pick = rng.integers(0, home_topics.shape[1], size=(n, slots))
    from_home = home_topics[creator[:, None], pick]
    anywhere = rng.choice(NUM_TOPICS, size=(n, slots), p=topics.popularity)
    use_home = rng.random((n, slots)) < config.creator_topic_focus_share
    use_home[:, 0] = True
    chosen = np.where(use_home, from_home, anywhere)
    used = rng.random((n, slots)) < config.extra_topic_prob
    used[:, 0] = True
    weights = (rng.standard_exponential((n, slots), dtype=np.float32) + _MIN_TOPIC_WEIGHT) * used
    weights /= weights.sum(axis=1, keepdims=True)
    dense = np.zeros((n, NUM_TOPICS), dtype=np.float32)
    rows = np.arange(n)
    for slot in range(slots):  # within one slot every row appears once: no lost updates
        dense[rows, chosen[:, slot]] += weights[:, slot]
    return dense


def _content(
    config: WorldConfig, topics: _Topics, post_topics: FloatArray, rng: np.random.Generator
) -> FloatArray:
    """Unit-length embeddings: the topic mix through the topic embeddings, plus noise."""
    content = post_topics @ topics.embeddings
    noise = np.float32(config.content_noise)
    for start in range(0, content.shape[0], _CONTENT_CHUNK_ROWS):
        block = content[start : start + _CONTENT_CHUNK_ROWS]
        block += noise * rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), np.float32(1e-6))
    return content
