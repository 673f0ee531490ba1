"""What a compact decision logs of its features, and how a reader gets them back whole.

A compact decision (explore's default log, docs/contracts.md) logs, besides each shown
post's catalogue version:

* **the user** typed (``FeatureVector.user``, a ``CompactUserFeatures``) instead of a map
  with a name per value: :func:`logged_user_features` writes it, :func:`full_user_features`
  turns it back into exactly what ``UserFeatures.to_proto`` logs in a full decision. The
  numbers are float32, as ``UserFeatures`` holds them; ``as_of_ms`` is the decision time.
* **each item's dynamic post features**, named once per decision by
  ``item_feature_names``: either the names of ``FeatureVector.values``, or one
  ``"@<layout>"`` entry naming an :class:`ItemLayout` below (:func:`item_layout` reads
  both, :func:`logged_item_values` reads an item by them). Explore logs
  :data:`POST_VALUES_LAYOUT`: four values, the country code in its own varint field, and
  no ``age_hours``, which the re-join derives from the post version's ``created_ms`` and
  the decision time (:func:`~feedrank.core.feature_schema.post_age_hours`, the store's
  own formula).

Example::

    header.user_features.CopyFrom(logged_user_features(user, decision_time_ms))
    ...
    user = full_user_features(example.user_features, example.decision_time_ms)
    numbers = logged_item_values(example.post_feature_names, example.post_features)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feedrank.core.feature_schema import (
    AFFINITY_FEATURES,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    UserFeatures,
)
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class ItemLayout:
    """What each compact item of a decision logs: ``values`` names its
    ``FeatureVector.values`` in order; with ``country_code_field``, its ``country_code`` is
    ``FeatureVector.country_code`` (a varint: two bytes where a float takes four)."""

    values: tuple[str, ...]
    country_code_field: bool = False


POST_VALUES_LAYOUT = "@post_values_1"
"""The layout explore's compact items log (``item_feature_names == [POST_VALUES_LAYOUT]``)."""
ITEM_LAYOUTS: dict[str, ItemLayout] = {
    POST_VALUES_LAYOUT: ItemLayout(
        values=("creator_followers", "creator_engagement_rate", "impressions", "engagement_rate"),
        country_code_field=True,
    ),
}
"""Every layout a log may name: kept for good, so old logs stay readable (a new layout gets
a new name, never an edit). A dynamic post feature a layout does not log is derived by
the re-join (``age_hours``)."""


class UnknownLayoutError(ValueError):
    """``item_feature_names`` names a layout this version does not know."""


def item_layout(names: Sequence[str]) -> ItemLayout:
    """The layout ``item_feature_names`` (or an example's ``post_feature_names``) gives:
    the layout its one ``"@<layout>"`` entry names, or its names as the values' names.
    UnknownLayoutError for a layout this version does not know."""
    if len(names) == 1 and names[0].startswith("@"):
        layout = ITEM_LAYOUTS.get(names[0])
        if layout is None:
            known = ", ".join(ITEM_LAYOUTS)
            raise UnknownLayoutError(f"unknown feature layout {names[0]!r} (known: {known})")
        return layout
    return ItemLayout(values=tuple(names))


def logged_item_values(
    names: Sequence[str], features: events_pb2.FeatureVector
) -> dict[str, float]:
    """The dynamic post features a compact item logged, by name (``names``: the decision's
    ``item_feature_names``). ValueError for an unknown layout or values that the names do
    not match one to one."""
    layout = item_layout(names)
    if len(layout.values) != len(features.values):
        raise ValueError(f"{len(features.values)} values named by {len(layout.values)} names")
    logged = dict(zip(layout.values, features.values, strict=True))
    if layout.country_code_field:
        logged["country_code"] = float(features.country_code)
    return logged


def logged_user_features(user: UserFeatures, decision_time_ms: int) -> events_pb2.FeatureVector:
    """``user`` as a compact decision logs it at ``decision_time_ms``: typed, or the full map
    (``to_proto``) when ``user`` is not as of the decision time (which typed leaves out)."""
    if user.as_of_ms != decision_time_ms:
        return user.to_proto()
    shares = [(topic, share) for topic, share in enumerate(user.topic_affinity) if share != 0.0]
    return events_pb2.FeatureVector(
        user=events_pb2.CompactUserFeatures(
            language=LANGUAGE_VOCABULARY.code(user.language),
            country=COUNTRY_VOCABULARY.code(user.country),
            age_bucket=user.age_bucket,
            activity=user.activity,
            follow_count=user.follow_count,
            engagements_7d=user.engagements_7d,
            affinity_engagements=user.affinity_engagements,
            sensitive_filter=user.sensitive_filter,
            known=user.known,
            affinity_topic_mask=sum(1 << topic for topic, _ in shares),
            affinity_shares=[share for _, share in shares],
        )
    )


def is_compact_user(features: events_pb2.FeatureVector) -> bool:
    return features.HasField("user")


def full_user_features(
    features: events_pb2.FeatureVector, decision_time_ms: int
) -> events_pb2.FeatureVector:
    """The user's features as a full decision logs them (``UserFeatures.to_proto``):
    ``features`` itself unless it is compact; a compact one's ``as_of_ms`` is
    ``decision_time_ms``. ValueError for a compact user whose affinity topics and shares
    do not pair up."""
    if not is_compact_user(features):
        return features
    user = features.user
    mask, shares = user.affinity_topic_mask, list(user.affinity_shares)
    topics = [topic for topic in range(NUM_TOPICS) if mask >> topic & 1]
    if len(topics) != len(shares) or mask >> NUM_TOPICS:
        raise ValueError(
            f"compact user: affinity topics {mask:#x} (of {NUM_TOPICS}) for {len(shares)} shares"
        )
    pairs = zip(topics, shares, strict=True)
    affinity = {AFFINITY_FEATURES[topic]: share for topic, share in pairs}
    return events_pb2.FeatureVector(
        numeric={
            "age_bucket": float(user.age_bucket),
            "activity": user.activity,
            "follow_count": user.follow_count,
            "engagements_7d": user.engagements_7d,
            "affinity_engagements": user.affinity_engagements,
            "sensitive_filter": float(user.sensitive_filter),
            "known": float(user.known),
            "as_of_ms": float(decision_time_ms),
            **affinity,
        },
        categorical={"language": user.language, "country": user.country},
    )
