"""``feedrank serve``: the explore (Ranking gRPC) service with its worker processes."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from feedrank.cli.context import settings_of
from feedrank.core.clock import SystemClock
from feedrank.core.settings import ExploreSettings

console = Console()
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    context: typer.Context,
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
) -> None:
    """Serve Ranking.Rank on gRPC from several worker processes until Ctrl-C or SIGTERM."""
    settings = settings_of(context)
    grpc_port = port or settings.ports.ranking_grpc
    http_port = metrics_port or settings.ports.explore_metrics
    worker_count = workers or settings.explore.workers
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s",
    )
    _prepare_multiprocess_metrics(settings.paths.state_dir / "prometheus" / "explore")
    # Imported only now: prometheus_client picks its multiprocess mode at import time.
    app = importlib.import_module("feedrank.explore.app")
    source = importlib.import_module("feedrank.explore.catalogue_source")
    pool_module = importlib.import_module("feedrank.explore.workers")

    clock = SystemClock()
    topics = settings.topics
    console.print(f"replaying the catalogue from {topics.posts}, {topics.users}, {topics.graph}…")
    replayed = source.replay_catalogue(settings, clock, progress=_replay_progress())
    console.print(
        f"catalogue: {replayed.state.live_rows().size:,} posts, {replayed.state.num_users:,} "
        f"users from {replayed.records:,} records ({replayed.rejected:,} dead-lettered)"
    )
    plans = importlib.import_module("feedrank.explore.plan_sources")
    version = app.main_arm_version(plans.first_plan(settings.explore))
    doing = f"loading {version}, the serving plan's" if version else "embedding and indexing"
    with console.status(f"{doing} model over the catalogue…"):
        state = app.build_serving_state(
            settings,
            clock,
            replayed.state,
            positions=replayed.positions,
            show_progress=False,
            initial_version=version,
        )
    pool = pool_module.WorkerPool(
        app.worker_backend_factory(settings, clock, state, log_decisions=log_decisions),
        settings.explore,
        clock,
        pool_module.PoolConfig(
            address=f"{settings.ports.bind_host}:{grpc_port}",
            workers=worker_count,
            metrics_address=(settings.ports.bind_host, http_port),
        ),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    pool.start()
    console.print(
        f"serving Ranking on {settings.ports.bind_host}:{grpc_port} with {worker_count} "
        f"workers ({_models_followed(settings.explore, state.model.version)}); "
        f"metrics on http://{settings.ports.bind_host}:{http_port}/metrics"
    )
    try:
        while not stop.wait(timeout=1.0):
            if not pool.alive():
                console.print("[red]a worker exited; stopping[/]")
                raise typer.Exit(1)
    finally:
        pool.stop()
    console.print("explore service stopped")


def _replay_progress() -> Callable[[int], None]:
    """Prints the records read every 100,000 (also when the output is a pipe)."""
    printed = [0]

    def progress(read: int) -> None:
        if read >= printed[0] + 100_000:
            printed[0] = read - read % 100_000
            console.print(f"  {read:,} catalogue records read")

    return progress


def _models_followed(explore: ExploreSettings, initial_version: str) -> str:
    if explore.deploy_address:
        return f"models from Deploy.GetServingPlan at {explore.deploy_address}"
    if explore.plan_file is not None:
        return f"models from the plan file {explore.plan_file}"
    return f"model {initial_version}; no serving plan configured"


def _prepare_multiprocess_metrics(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())
    # prometheus_client picks its value class from the environment when first imported,
    # and another command module may have imported it already: pick again, so every
    # metric created from here on (the explore metrics) is written per process.
    from prometheus_client import values  # noqa: PLC0415 - this module never imports it early

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def register(app: typer.Typer) -> None:
    app.command()(serve)
