"""Point-in-time re-join: a compact shown item's post features, whole, as the ranker used them.

Explore logs compact decisions (docs/contracts.md): each shown item carries its post's
catalogue version (``catalogue_version``: the ts of the post's latest upsert in the
ranker's catalogue) and only the impression's dynamic values (``features.values``, named
once per decision by ``item_feature_names``, a list of names or a layout of
:mod:`feedrank.core.compact_features`; the join copies both onto each
``LabelledExample`` as ``catalogue_version`` and ``post_feature_names``).
:class:`PostFeatureRejoin` rebuilds the full post ``FeatureVector`` from them, exactly
as :meth:`PostFeatureBatch.to_protos` logged it in a full decision:

* the static part (language, topics, content embedding, sensitive, region_locked) from
  the learner's catalogue **at that version** (:func:`find_post_version`: the live row,
  or a superseded version the catalogue keeps), never from another version;
* the dynamic numbers from the logged values; ``age_hours``, when not logged, from the
  version's ``created_ms`` and the decision time (``post_age_hours``, the store's own
  formula); the country from the logged ``country_code`` (the catalogue's own code when
  it is the same model code);
* ``creator_index``: the row of the version's creator in the learner's catalogue (a
  process-local row, like a full log's, which no model reads).

A post version the catalogue cannot answer for (post unknown, catalogue behind the
ranker, version superseded longer ago than kept or compacted away) is **skipped and
counted** (``skipped``, by :class:`VersionMiss` reason or "malformed", ``on_skip`` and a
log line), not filled in. Full items (``catalogue_version`` 0: imported logs, the
simulator's history, decisions logged with ``explore.decision_features = "full"``) pass
through unchanged. A completed example also has its user's features whole
(:func:`~feedrank.core.compact_features.full_user_features`). With ``wait_s``, a version
the catalogue has not reached yet (a feed tails it on another thread) is waited for that
long before it counts as a skip.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.post_versions import PostVersion, VersionMiss, find_post_version
from feedrank.catalogue.state import UNKNOWN_COUNTRY
from feedrank.core.compact_features import (
    full_user_features,
    is_compact_user,
    logged_item_values,
)
from feedrank.core.feature_schema import (
    COUNTRIES,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    TOPIC_FEATURES,
    post_age_hours,
)
from feedrank.v1 import events_pb2

log = logging.getLogger("feedrank.learners")

MALFORMED = "malformed"  # skip reason: values and names of different lengths, unknown layout
_WAIT_STEP_S = 0.02
_NO_WAIT_AFTER_TIMEOUT_S = 60.0  # a feed that did not catch up once is not waited on again
_LOG_EVERY = 1_000  # skips of a reason between two log lines (the first one is logged)
_REMEMBERED = 16_384  # post versions whose static part is kept for their next impressions


class PostFeatureRejoin:
    """Full post features of compact shown items and examples, from ``catalogue``."""

    def __init__(
        self,
        catalogue: CatalogueState,
        *,
        wait_s: float = 0.0,
        on_skip: Callable[[str], None] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.wait_s = wait_s
        self.on_skip = on_skip
        self.rejoined = 0
        self.skipped: Counter[str] = Counter()
        self._no_wait_until = 0.0
        self._found: dict[tuple[str, int], _StaticPart] = {}  # recently re-joined versions

    def post_features(
        self,
        post_id: str,
        version_ms: int,
        names: Sequence[str],
        logged: events_pb2.FeatureVector,
        decision_time_ms: int,
    ) -> events_pb2.FeatureVector | str:
        """The full features of ``post_id`` at ``version_ms`` with the dynamic ones an
        impression at ``decision_time_ms`` logged (``logged``, named by ``names``: the
        decision's ``item_feature_names``), or the reason there are none (not counted)."""
        try:
            dynamic = logged_item_values(names, logged)
        except ValueError:  # an unknown layout, or values the names do not match
            return MALFORMED
        static = self._found.get((post_id, version_ms))
        if static is None:
            found = self._version(post_id, version_ms)
            if isinstance(found, VersionMiss):
                return found.value
            static = self._remember((post_id, version_ms), _StaticPart.of(found))
        return static.with_values(dynamic, decision_time_ms)

    def complete(self, example: events_pb2.LabelledExample) -> bool:
        """Complete a compact ``example`` in place (its user's and post's features whole,
        its ``catalogue_version`` and ``post_feature_names`` cleared, as a full example has
        them); False, counted and logged, when its version cannot be found. True for a
        full example, left as it is."""
        if is_compact_user(example.user_features):
            example.user_features.CopyFrom(
                full_user_features(example.user_features, example.decision_time_ms)
            )
        version = example.catalogue_version
        if version == 0:
            return True
        features = self.post_features(
            example.post_id,
            version,
            example.post_feature_names,
            example.post_features,
            example.decision_time_ms,
        )
        if isinstance(features, str):
            self._skip(features, example.decision_id, example.post_id, version)
            return False
        example.post_features.CopyFrom(features)
        example.catalogue_version = 0
        del example.post_feature_names[:]
        self.rejoined += 1
        return True

    def examples(
        self, examples: Iterable[events_pb2.LabelledExample]
    ) -> Iterator[events_pb2.LabelledExample]:
        """Each example, compact ones completed in place; those that cannot be are left out."""
        return (example for example in examples if self.complete(example))

    def shown_items(
        self, decision: events_pb2.Decision
    ) -> list[tuple[events_pb2.ShownItem, events_pb2.FeatureVector]]:
        """Each shown item of ``decision`` with its full post features (a full item's own);
        items whose version cannot be found are left out, counted and logged."""
        return self._full_items(decision, decision.items)

    def pool_items(
        self, decision: events_pb2.Decision
    ) -> list[tuple[events_pb2.ShownItem, events_pb2.FeatureVector]]:
        """The same for the decision's unshown exploration pool (``Decision.pool``)."""
        return self._full_items(decision, decision.pool)

    def _full_items(
        self, decision: events_pb2.Decision, items: Iterable[events_pb2.ShownItem]
    ) -> list[tuple[events_pb2.ShownItem, events_pb2.FeatureVector]]:
        names, at_ms = decision.item_feature_names, decision.event_time_ms
        shown = []
        for item in items:
            version = item.catalogue_version
            if version == 0:
                shown.append((item, item.features))
                continue
            features = self.post_features(item.post_id, version, names, item.features, at_ms)
            if isinstance(features, str):
                self._skip(features, decision.decision_id, item.post_id, version)
                continue
            shown.append((item, features))
            self.rejoined += 1
        return shown

    def skip_summary(self) -> str:
        """The skips so far, e.g. "3 unknown post, 1 version gone" ("none" without any)."""
        counted = (
            f"{count:,} {reason.replace('_', ' ')}" for reason, count in self.skipped.items()
        )
        return ", ".join(counted) or "none"

    def _remember(self, key: tuple[str, int], static: _StaticPart) -> _StaticPart:
        """Keep ``static`` for the next impressions of the same version (a version's static
        features never change; at most ``_REMEMBERED`` versions, the oldest go first)."""
        if len(self._found) >= _REMEMBERED:
            del self._found[next(iter(self._found))]
        self._found[key] = static
        return static

    def _version(self, post_id: str, version_ms: int) -> PostVersion | VersionMiss:
        found = find_post_version(self.catalogue, post_id, version_ms)
        ahead = (VersionMiss.UNKNOWN_POST, VersionMiss.CATALOGUE_BEHIND)
        if found not in ahead or self.wait_s <= 0 or time.monotonic() < self._no_wait_until:
            return found
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            time.sleep(_WAIT_STEP_S)
            found = find_post_version(self.catalogue, post_id, version_ms)
            if found not in ahead:
                return found
        self._no_wait_until = time.monotonic() + _NO_WAIT_AFTER_TIMEOUT_S
        return found

    def _skip(self, reason: str, decision_id: str, post_id: str, version_ms: int) -> None:
        self.skipped[reason] += 1
        if self.on_skip is not None:
            self.on_skip(reason)
        count = self.skipped[reason]
        if count % _LOG_EVERY == 1:
            log.warning(
                "not learning post %s of decision %s at catalogue version %d: %s "
                "(%d such shown items so far)",
                post_id,
                decision_id,
                version_ms,
                reason.replace("_", " "),
                count,
            )


def logged_post_numbers(example: events_pb2.LabelledExample) -> dict[str, float]:
    """The post numbers ``example`` logged itself: a full example's numeric features, a
    compact one's dynamic values by name (what needs no catalogue, e.g. for off-policy
    evaluation, whose estimators read no post feature; a derived ``age_hours`` is not
    among them)."""
    features = example.post_features
    if example.catalogue_version == 0:
        return dict(features.numeric)
    try:
        return logged_item_values(example.post_feature_names, features)
    except ValueError:  # an unknown layout, or values the names do not match
        return {}


@dataclass(frozen=True)
class _StaticPart:
    """What a post version gives every impression's re-joined features (as a full log
    writes them, ``PostFeatureBatch.to_protos``)."""

    numeric: dict[str, float]  # sensitive, region_locked, creator_index, topic_<i>
    language: str
    country: str  # as the catalogue has it now: its model code may not be the logged one
    country_code: int
    embedding: list[float]
    created_ms: int

    @classmethod
    def of(cls, version: PostVersion) -> _StaticPart:
        topics: list[float] = version.topics.tolist()
        numeric = {
            "sensitive": float(version.sensitive),
            "region_locked": float(version.region_locked),
            "creator_index": float(version.creator_row),
        }
        numeric.update({TOPIC_FEATURES[slot]: w for slot, w in enumerate(topics) if w != 0.0})
        if len(numeric) == 3:  # present but zero: "no topics", not "topics not logged"
            numeric[TOPIC_FEATURES[0]] = 0.0
        return cls(
            numeric=numeric,
            language=LANGUAGE_VOCABULARY.code(version.language),
            country=COUNTRY_VOCABULARY.code(version.country),
            country_code=COUNTRY_VOCABULARY.model_code(version.country),
            embedding=version.content.tolist(),
            created_ms=version.created_ms,
        )

    def with_values(
        self, dynamic: dict[str, float], decision_time_ms: int
    ) -> events_pb2.FeatureVector:
        """The full features with the ``dynamic`` ones an impression at ``decision_time_ms``
        logged (by name).

        ``age_hours``, when not logged, is the store's: from the version's creation to the
        decision time. The country is the ranker's: the catalogue's own when it has the
        logged model code (``country_code``), else the code of the logged model index (for
        "other", a country past the schema's, the unknown country: the models' same input)."""
        numeric = dict(dynamic)
        if "age_hours" not in numeric:
            numeric["age_hours"] = float(post_age_hours(decision_time_ms, self.created_ms))
        logged = numeric.pop("country_code", None)
        numeric.update(self.numeric)
        country = self.country
        if logged is not None and logged != self.country_code:
            code = int(logged)
            country = COUNTRIES[code] if 0 <= code < len(COUNTRIES) else UNKNOWN_COUNTRY
        return events_pb2.FeatureVector(
            numeric=numeric,
            categorical={"language": self.language, "country": country},
            embedding=self.embedding,
        )
