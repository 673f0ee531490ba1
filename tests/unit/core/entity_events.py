"""Catalogue event builders shared by the entity codec tests: JSON payloads and protobufs.

The ``*_json`` builders start from a valid event, apply the given fields and drop any
field set to ``...`` (so a test can leave a field out); ``make_*`` build the protobuf twins.
"""

from __future__ import annotations

import json

from feedrank.core import feature_schema as schema
from feedrank.core.time_units import HOUR_MS
from feedrank.v1 import catalogue_pb2

TS = 1_764_000_000_000
CREATED = TS - HOUR_MS
UPSERT = catalogue_pb2.ENTITY_OP_UPSERT
DELETE = catalogue_pb2.ENTITY_OP_DELETE
FOLLOW = catalogue_pb2.GRAPH_OP_FOLLOW
EMBEDDING = [0.25] * schema.CONTENT_DIM


def dumps(document: dict[str, object], fields: dict[str, object]) -> bytes:
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def post_json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "op": "upsert",
        "post_id": "p-1",
        "creator_id": "c-1",
        "created_ms": CREATED,
        "language": "en",
        "country": "US",
        "topics": ["cats", "music"],
        "sensitive": False,
        "embedding": EMBEDDING,
        "features": {"quality": 0.5, "format": "video"},
        "ts_ms": TS,
    }
    return dumps(document, fields)


def post_delete_json(**fields: object) -> bytes:
    return dumps({"op": "delete", "post_id": "p-1", "ts_ms": TS}, fields)


def user_json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "op": "upsert",
        "user_id": "u-1",
        "language": "pt-BR",
        "country": "BR",
        "age_bucket": "25-34",
        "features": {"tenure_days": 12, "plan": "free"},
        "ts_ms": TS,
    }
    return dumps(document, fields)


def graph_json(**fields: object) -> bytes:
    document = {"op": "follow", "user_id": "u-1", "target_id": "c-1", "ts_ms": TS}
    return dumps(dict(document), fields)


def make_post(**fields: object) -> catalogue_pb2.PostEvent:
    values: dict[str, object] = {
        "op": UPSERT,
        "post_id": "p-1",
        "creator_id": "c-1",
        "created_ms": CREATED,
        "language": "en",
        "topics": ["cats"],
        "ts_ms": TS,
    }
    values.update(fields)
    return catalogue_pb2.PostEvent(**values)  # type: ignore[arg-type]


def make_user(**fields: object) -> catalogue_pb2.UserEvent:
    values: dict[str, object] = {"op": UPSERT, "user_id": "u-1", "ts_ms": TS}
    values.update(fields)
    return catalogue_pb2.UserEvent(**values)  # type: ignore[arg-type]


def make_graph(**fields: object) -> catalogue_pb2.GraphEvent:
    values: dict[str, object] = {"op": FOLLOW, "user_id": "u-1", "target_id": "c-1", "ts_ms": TS}
    values.update(fields)
    return catalogue_pb2.GraphEvent(**values)  # type: ignore[arg-type]


def features(**values: float | str) -> dict[str, catalogue_pb2.FeatureValue]:
    return {
        name: catalogue_pb2.FeatureValue(text=value)
        if isinstance(value, str)
        else catalogue_pb2.FeatureValue(number=value)
        for name, value in values.items()
    }
