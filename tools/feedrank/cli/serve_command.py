"""``feedrank serve``: the explore (Ranking gRPC) service with its worker processes."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from feedrank.cli.context import InsecureOption, allowing_plaintext, settings_of
from feedrank.core.grpc_tls import PlaintextRefused
from feedrank.core.reporting import Reporter
from feedrank.explore.multiprocess_metrics import prepare_multiprocess_metrics

console = Console()


def serve(
    context: typer.Context,
    *,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: explore.workers).", min=1)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Ranking gRPC port (default: ports.ranking_grpc).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Aggregated /metrics port (default: ports.explore_metrics).")
    ] = None,
    log_decisions: Annotated[
        bool, typer.Option(help="Log every decision to Kafka (feedrank.decisions).")
    ] = True,
    insecure: InsecureOption = False,
) -> None:
    """Serve Ranking.Rank on gRPC from several worker processes until Ctrl-C or SIGTERM."""
    settings = allowing_plaintext(settings_of(context), insecure)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s",
    )
    prepare_multiprocess_metrics(settings)
    # Imported only now: prometheus_client picks its multiprocess mode at import time.
    from feedrank.explore.service_runner import run_explore_service  # noqa: PLC0415

    try:
        status = run_explore_service(
            settings,
            workers=workers,
            grpc_port=port,
            metrics_port=metrics_port,
            log_decisions=log_decisions,
            reporter=Reporter(say=console.print, warn=_in_red, working=console.status),
        )
    except PlaintextRefused as error:
        _in_red(f"explore service not started: {error}")
        raise typer.Exit(1) from error
    if status:
        raise typer.Exit(status)


def _in_red(message: str) -> None:
    console.print(f"[red]{message}[/]")


def register(app: typer.Typer) -> None:
    app.command()(serve)
