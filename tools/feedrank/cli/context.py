"""What every subcommand receives from the top-level callback."""

from __future__ import annotations

from dataclasses import dataclass

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
