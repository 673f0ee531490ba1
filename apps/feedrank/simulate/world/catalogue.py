"""A generated world's OBSERVABLE tables as a :class:`CatalogueState`, in bulk.

The ids are the world's own (``p<row>``, ``u<row>``, ``c<row>``) and rows are interned in
table order, so catalogue row ``n`` is post ``p<n>``. Hidden parameters stay unread.
"""

from __future__ import annotations

import numpy as np

from feedrank.catalogue import CatalogueState, UserProfile
from feedrank.core.feature_schema import post_id, user_id
from feedrank.simulate.world.generator import World

START_TS_MS = 946_684_800_000  # the catalogue state's ts for generated rows (year 2000)


def creator_id(index: int) -> str:
    return f"c{index}"


def catalogue_from_world(world: World, catalogue: CatalogueState | None = None) -> CatalogueState:
    """``catalogue`` (a new one by default) filled with the world's users, creators, posts."""
    catalogue = catalogue or CatalogueState()
    creators, users, posts = world.creators, world.users, world.posts
    for row in range(len(creators)):
        catalogue.set_creator_stats(
            creator_id(row),
            followers=float(creators.followers[row]),
            engagement_rate=float(creators.engagement_rate[row]),
        )
    for row in range(len(users)):
        catalogue.put_user(
            user_id(row),
            UserProfile(
                language=int(users.language[row]),
                country=int(users.country[row]),
                age_bucket=int(users.age_bucket[row]),
                sessions_per_day=float(users.sessions_per_day[row]),
                follow_count=float(users.follow_count[row]),
                sensitive_filter=bool(users.sensitive_filter[row]),
                history_topics=np.asarray(users.history_topics[row], dtype=np.float32),
                updated_ms=START_TS_MS,
            ),
        )
    catalogue.bulk_upsert_posts(
        [post_id(row) for row in range(len(posts))],
        [creator_id(int(row)) for row in posts.creator_index],
        language=posts.language,
        country=posts.country,
        region_locked=posts.region_locked,
        topics=posts.topics,
        content=posts.content,
        created_ms=posts.created_ms,
        sensitive=posts.sensitive,
        ts_ms=START_TS_MS,
    )
    return catalogue
