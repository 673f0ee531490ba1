"""``feedrank learn``: the online learner, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from feedrank.cli.context import settings_of
from feedrank.cli.job_console import console_reporter

console = Console()


def learn(
    context: typer.Context,
    until_idle: Annotated[
        float | None,
        typer.Option(help="Stop (after a final checkpoint) once no example came for this long."),
    ] = None,
    metrics: Annotated[bool, typer.Option(help="Serve /metrics on ports.learner_metrics.")] = True,
) -> None:
    """Learn online from feedrank.examples; checkpoint, commit and publish versions."""
    # Imported here, not at the top: the learner's drift monitor brings river and scipy,
    # which take a second or two that every other feedrank command (serve's restart above
    # all) would pay for nothing.
    from feedrank.learners.online.service import run_online_learner  # noqa: PLC0415

    settings = settings_of(context)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_online_learner(
        settings,
        until_idle_s=until_idle,
        serve_metrics=metrics,
        reporter=console_reporter(console, show_work=False),
    )


def register(app: typer.Typer) -> None:
    app.command()(learn)
