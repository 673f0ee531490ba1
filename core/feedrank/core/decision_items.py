"""A compact decision's items, encoded in C: one pass instead of a Python loop per item.

Explore logs one decision per Rank call. Writing its 50 items in Python
(:mod:`feedrank.core.decision_wire`: each item's fields read, a ``b"".join`` of eight
pieces, its features sliced out of a numpy block) takes about 2.7 us an item on this
project's box, a few percent of a Rank call's CPU at 1M posts. ``_decision_items.c``
writes the same bytes in one pass: it reads each item's ``post_id``, ``position``,
``score`` and ``propensity`` (or, for the exploration pool's unshown items, the ids and
scores) and copies its dynamic values (a float32 row), its country code and its
catalogue version.

``make native`` builds it next to its source (part of ``make setup``: a C compiler and
Python's headers). Where it is not built (no compiler, a wheel built without it, a
big-endian machine) :data:`NATIVE` is None and ``decision_wire`` writes the same bytes in
Python, only slower; ``tests/unit/core/test_decision_items.py`` compares the two.

Example::

    from feedrank.core.decision_items import NATIVE

    if NATIVE is not None:  # None back: an unversioned post, encode in Python
        payload = NATIVE.encode_shown(
            ITEMS_KEY, items, prefix, values, country_codes, COUNTRY_CODE_KEY, versions
        )
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from feedrank.core.decision_wire import ShownItemFields


class ItemsEncoder(Protocol):
    """What ``_decision_items.c`` exports. Each item's ``features`` field is ``prefix``
    (its tag and length, then FeatureVector.values' tag and length), its row of ``values``
    (float32, one row per item) and, where ``codes`` is given, key ``code_key`` and the
    item's one-byte code. Both return None when an item's version is not positive (it
    has no compact features: the caller writes the decision in Python)."""

    def encode_shown(  # noqa: PLR0917 - a C function's arguments are positional
        self,
        field_key: int,
        items: Sequence[ShownItemFields],
        prefix: bytes,
        values: npt.NDArray[np.float32],
        codes: npt.NDArray[np.uint8] | None,
        code_key: int,
        versions: npt.NDArray[np.int64],
    ) -> bytes | None:
        """``items`` as repeated field ``field_key`` (its one-byte key), item i with row i
        of ``values`` and ``codes`` and version i of ``versions``."""
        ...

    def encode_pool(  # noqa: PLR0917 - a C function's arguments are positional
        self,
        field_key: int,
        post_ids: Sequence[str],
        scores: Sequence[float],
        prefix: bytes,
        values: npt.NDArray[np.float32],
        codes: npt.NDArray[np.uint8] | None,
        code_key: int,
        versions: npt.NDArray[np.int64],
    ) -> bytes | None:
        """Pool items (no position, no propensity): ``encode_shown`` of ids and scores."""
        ...


def _load() -> ItemsEncoder | None:
    """The built extension, or None where it is missing or cannot run here."""
    if sys.byteorder != "little":
        return None  # the C code copies doubles as they lie in memory
    try:
        return cast(ItemsEncoder, importlib.import_module("feedrank.core._decision_items"))
    except ImportError:
        return None


NATIVE = _load()
"""The C encoder, or None where it is not built: then Python writes the items."""
