"""Post versions: the static features each upsert of a post set, found by (post id, version).

A compact decision names each shown post's catalogue version (``ShownItem.
catalogue_version``: the ``ts_ms`` of the post's latest upsert in the ranker's
catalogue) instead of copying the features that upsert fixed
(:data:`~feedrank.core.feature_schema.STATIC_POST_FEATURES`). A learner re-joins them
from its own catalogue, replayed from the same ``feedrank.posts``: the live row answers
for the version it holds, and :class:`SupersededPosts` keeps the versions that a later
upsert or a takedown replaced, for ``retention_ms`` of entity event time after they were
replaced (learners keep at least the reward window; the posts topic keeps superseded
records as long, ``min.compaction.lag.ms``). :func:`find_post_version` answers, or says
why it cannot (:class:`VersionMiss`): a version is never guessed from another one.

Example::

    state = CatalogueState(keep_superseded_ms=15 * DAY_MS)
    found = find_post_version(state, "p7", 1_764_000_000_000)
    if isinstance(found, VersionMiss): ...  # skip the example and count why
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import FloatArray
from feedrank.v1 import catalogue_pb2

if TYPE_CHECKING:
    from feedrank.catalogue.state import CatalogueState


@dataclass(frozen=True)
class PostVersion:
    """A post's static features as the upsert of ``version_ms`` set them (rows and vocabulary
    ints are those of the process that holds it)."""

    version_ms: int
    language: int  # LANGUAGE_VOCABULARY int
    country: int  # COUNTRY_VOCABULARY int, as the catalogue holds it now (see country_code)
    region_locked: bool
    creator_row: int
    topics: FloatArray  # (NUM_TOPICS,)
    content: FloatArray  # (CONTENT_DIM,)
    created_ms: int
    sensitive: bool

    def same_features(self, other: PostVersion) -> bool:
        """Whether ``other`` holds the same static features (its version aside)."""
        return (
            (self.language, self.country, self.region_locked, self.creator_row)
            == (other.language, other.country, other.region_locked, other.creator_row)
            and (self.created_ms, self.sensitive) == (other.created_ms, other.sensitive)
            and np.array_equal(self.topics, other.topics)
            and np.array_equal(self.content, other.content)
        )


class VersionMiss(StrEnum):
    """Why a (post id, version) has no answer; the learners count skips by it."""

    UNKNOWN_POST = "unknown_post"  # the catalogue never held the post
    CATALOGUE_BEHIND = "catalogue_behind"  # it holds an older version only: not applied yet
    VERSION_GONE = "version_gone"  # replaced longer ago than kept, or compacted away


Column = Callable[[str], npt.NDArray[Any]]


def row_version(column: Column, row: int, version_ms: int) -> PostVersion:
    """The static features of catalogue ``row`` (``column``: the state's post columns; call
    under its lock), as a version of their own (copies, not views)."""
    return PostVersion(
        version_ms=version_ms,
        language=int(column("language")[row]),
        country=int(column("country")[row]),
        region_locked=bool(column("region_locked")[row]),
        creator_row=int(column("creator_row")[row]),
        topics=np.array(column("topics")[row], dtype=np.float32),
        content=np.array(column("content")[row], dtype=np.float32),
        created_ms=int(column("created_ms")[row]),
        sensitive=bool(column("sensitive")[row]),
    )


class SupersededPosts:
    """Versions replaced by a later upsert or a takedown, kept ``retention_ms`` (entity event
    time: the ts of what replaced them, against the latest such ts seen).

    A version whose static features equal the one kept before it for the same post (an
    upsert that changed only, say, the creator's follower count) shares its arrays.
    Not thread-safe by itself: the catalogue state calls it under its lock.
    """

    def __init__(self, retention_ms: int) -> None:
        if retention_ms < 0:
            raise ValueError("retention_ms must be >= 0")
        self.retention_ms = retention_ms
        self._versions: dict[str, list[PostVersion]] = {}
        self._order: deque[tuple[int, str, int]] = deque()  # (replaced at, post id, version)
        self._latest_ms: int | None = None

    def __len__(self) -> int:
        return len(self._order)

    def keep(self, post_id: str, version: PostVersion, replaced_ms: int) -> None:
        """Keep ``version`` of ``post_id``, replaced at ``replaced_ms``; forget expired ones."""
        kept = self._versions.setdefault(post_id, [])
        if kept and kept[-1].same_features(version):
            last = kept[-1]
            version = replace(last, version_ms=version.version_ms)
        kept.append(version)
        self._order.append((replaced_ms, post_id, version.version_ms))
        latest = self._latest_ms
        self._latest_ms = replaced_ms if latest is None else max(latest, replaced_ms)
        self._expire(self._latest_ms - self.retention_ms)

    def replaced(self, event: catalogue_pb2.PostEvent, column: Column, row: int) -> None:
        """Keep the live version of ``row`` that ``event`` (about to be applied) replaces: a
        dead row's was kept at its takedown, and an upsert of the same ts is the same version."""
        if not column("alive")[row]:
            return
        version_ms = int(column("updated_ms")[row])
        if event.op == catalogue_pb2.ENTITY_OP_DELETE or version_ms != event.ts_ms:
            self.keep(event.post_id, row_version(column, row, version_ms), event.ts_ms)

    def find(self, post_id: str, version_ms: int) -> PostVersion | None:
        for version in reversed(self._versions.get(post_id, ())):
            if version.version_ms == version_ms:
                return version
        return None

    def _expire(self, horizon_ms: int) -> None:
        order = self._order
        while order and order[0][0] < horizon_ms:
            _, post_id, version_ms = order.popleft()
            kept = self._versions[post_id]
            for index, version in enumerate(kept):
                if version.version_ms == version_ms:
                    del kept[index]
                    break
            if not kept:
                del self._versions[post_id]


def find_post_version(
    state: CatalogueState, post_id: str, version_ms: int
) -> PostVersion | VersionMiss:
    """The static features ``post_id`` had at ``version_ms`` in ``state``: its live row when
    that is the version, else a superseded version it kept; else why not."""
    with state.lock:
        row = state.post_row(post_id)
        if row is None:
            return VersionMiss.UNKNOWN_POST
        column = state.post_column
        updated_ms = int(column("updated_ms")[row])
        if updated_ms == version_ms and bool(column("alive")[row]):
            return row_version(column, row, version_ms)
        kept = state.superseded.find(post_id, version_ms) if state.superseded else None
        if kept is not None:
            return kept
        return VersionMiss.CATALOGUE_BEHIND if updated_ms < version_ms else VersionMiss.VERSION_GONE
