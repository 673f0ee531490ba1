"""``feedrank deploy``: the deploy control service (models, rollouts, canary analysis)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from feedrank.cli.context import InsecureOption, allowing_plaintext, settings_of
from feedrank.core.clock import SystemClock
from feedrank.deploy.errors import DeployError

console = Console()


def deploy(
    context: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Deploy gRPC port (default: ports.deploy_grpc).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="/metrics port (default: ports.deploy_metrics).")
    ] = None,
    analysis: Annotated[
        bool | None,
        typer.Option(
            "--analysis/--no-analysis",
            help="Judge canaries automatically from feedrank.metrics (default: deploy.analysis).",
        ),
    ] = None,
    insecure: InsecureOption = False,
) -> None:
    """Serve the Deploy control service until Ctrl-C or SIGTERM."""
    settings = allowing_plaintext(settings_of(context), insecure)
    # Imported here: the registry pulls in torch, which other subcommands need not load.
    from feedrank.deploy.server import DeployServer  # noqa: PLC0415
    from feedrank.deploy.store import state_file_path  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = DeployServer(
            settings,
            SystemClock(),
            port=port,
            metrics_port=metrics_port or settings.ports.deploy_metrics,
            analysis=analysis,
        )
        server.start()
    except (DeployError, OSError) as error:
        console.print(f"[red]deploy service failed to start:[/] {error}")
        raise typer.Exit(1) from error
    rollout = server.control.rollout()
    console.print(
        f"serving Deploy on {settings.ports.bind_host}:{server.port} "
        f"(state {state_file_path(settings)}; stable {rollout.stable_version or 'none'}, "
        f"{rollout.phase}); metrics on :{metrics_port or settings.ports.deploy_metrics}"
    )
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        server.stop()
    console.print("deploy service stopped")


def register(app: typer.Typer) -> None:
    app.command()(deploy)
