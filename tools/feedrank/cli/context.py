"""What every subcommand receives from the top-level callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from feedrank.core.settings import Settings


@dataclass(frozen=True)
class CliState:
    settings: Settings


def settings_of(context: typer.Context) -> Settings:
    state = context.obj
    if not isinstance(state, CliState):
        raise RuntimeError("the feedrank CLI callback did not run")
    return state.settings


InsecureOption = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Serve gRPC in plaintext on a non-loopback ports.bind_host (refused otherwise; "
        "tls.cert_file and tls.key_file turn TLS on, `feedrank certs` makes them).",
    ),
]


def allowing_plaintext(settings: Settings, insecure: bool) -> Settings:
    """``settings`` with ``tls.insecure`` on when ``--insecure`` was given."""
    if not insecure:
        return settings
    return settings.model_copy(update={"tls": settings.tls.model_copy(update={"insecure": True})})
