"""One user's edges of the social graph, as :class:`~feedrank.catalogue.state.CatalogueState`
keeps them: follows, blocks and hidden creators, each edge with the ts of its latest event."""

from __future__ import annotations

from dataclasses import dataclass, field

from feedrank.v1 import catalogue_pb2


@dataclass
class Edges:
    """One user's graph: target id -> (in effect, ts of the latest event), per relation."""

    follows: dict[str, tuple[bool, int]] = field(default_factory=dict)
    blocks: dict[str, tuple[bool, int]] = field(default_factory=dict)
    hides: dict[str, tuple[bool, int]] = field(default_factory=dict)


GRAPH_RELATION = {
    catalogue_pb2.GRAPH_OP_FOLLOW: ("follows", True),
    catalogue_pb2.GRAPH_OP_UNFOLLOW: ("follows", False),
    catalogue_pb2.GRAPH_OP_BLOCK: ("blocks", True),
    catalogue_pb2.GRAPH_OP_UNBLOCK: ("blocks", False),
    catalogue_pb2.GRAPH_OP_HIDE_CREATOR: ("hides", True),
    catalogue_pb2.GRAPH_OP_UNHIDE_CREATOR: ("hides", False),
}
"""A graph op -> (the relation it sets, whether the edge is then in effect)."""
