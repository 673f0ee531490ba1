"""Bearer tokens on gRPC calls: reading them from metadata, comparing and making them.

Both the deploy control plane (operator and viewer tokens) and ``Rank`` (per-app API
keys) take a token as gRPC metadata ``authorization: Bearer <token>``, the convention
grpcurl (``-H 'authorization: Bearer …'``) and every gRPC client know.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence

AUTHORIZATION = "authorization"


def bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in metadata or ():
        if key.lower() == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (none without one)."""
    return ((AUTHORIZATION, f"Bearer {token}"),) if token else ()


def same_secret(known: str, offered: str | None) -> bool:
    """Whether ``offered`` is ``known``, in time that does not depend on where they differ."""
    return offered is not None and hmac.compare_digest(known.encode(), offered.encode())


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)
