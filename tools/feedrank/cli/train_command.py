"""``feedrank train``: batch-train both models and publish them behind an AUC gate."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from feedrank.cli.context import settings_of
from feedrank.cli.job_console import console_reporter
from feedrank.core.reporting import Reporter
from feedrank.core.time_units import parse_duration_ms
from feedrank.learners.batch.launch import backend_of, report_status, run_under_torchrun
from feedrank.learners.batch.train_job import (
    BelowAucGateError,
    LoggedExamples,
    RoundHistory,
    train_and_publish,
)
from feedrank.learners.batch.workers import ProcessGroup, launched_by_torchrun
from feedrank.learners.bootstrap import trainer_config
from feedrank.learners.device import DeviceUnavailableError
from feedrank.learners.training_run import TrainingRun
from feedrank.simulate.training_history import SimulatedHistory, simulated_history
from feedrank.simulate.world_views import local_world, world_topics

console = Console()
log = logging.getLogger("feedrank.learners")


def train(
    context: typer.Context,
    *,
    from_kafka: Annotated[
        bool, typer.Option(help="Train on topics.examples from its start to its end offsets.")
    ] = False,
    file: Annotated[
        Path | None, typer.Option(help="Train on an exported .parquet or .csv file.", exists=True)
    ] = None,
    simulate: Annotated[
        int, typer.Option(help="Train on this many examples from the simulated world.", min=0)
    ] = 0,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only the examples of this last stretch, e.g. 7d (Kafka: written since; "
            "a file: decided since). Default: all of them."
        ),
    ] = None,
    warm: Annotated[
        bool,
        typer.Option(
            help="Continue the registry's latest version instead of a fresh model (with "
            "--from-kafka or --file); the version published names it as its parent."
        ),
    ] = False,
    catalogue: Annotated[
        bool,
        typer.Option(
            help="Replay the catalogue topics: every live post is embedded and indexed in "
            "the version, and their topics fill in what older logs lack (not with --simulate)."
        ),
    ] = True,
    rounds: Annotated[
        int,
        typer.Option(help="Simulated rounds: each later one logged by the previous model.", min=1),
    ] = 1,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Epoch limit.")] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help="Adam learning rate [default: learner.batch_learning_rate]."),
    ] = None,
    negative_rate: Annotated[
        float, typer.Option(help="Share of negatives kept (downsampling).")
    ] = 1.0,
    recall_k: Annotated[int, typer.Option(help="K of the retrieval recall@K.")] = 50,
    min_auc: Annotated[float | None, typer.Option(help="AUC gate for publishing.")] = None,
    force: Annotated[bool, typer.Option(help="Publish even below the AUC gate.")] = False,
    publish: Annotated[
        bool, typer.Option(help="Publish to the registry if the gate passes.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, sampling, simulation.")] = 0,
    nproc: Annotated[
        int,
        typer.Option(
            help="Training processes (data-parallel, under torchrun): each reads its share "
            "of the examples (Kafka partitions or file rows) and they average gradients.",
            min=1,
        ),
    ] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train the two-tower and the ranker; print AUC, log loss, recall@K; publish if good."""

    settings = settings_of(context)
    sources = sum([from_kafka, file is not None, simulate > 0])
    if sources != 1:
        raise typer.BadParameter("give exactly one of --from-kafka, --file or --simulate N")
    if simulate and (warm or since is not None):
        raise typer.BadParameter("--warm and --since train on logs: not with --simulate")
    try:
        since_ms = None if since is None else int(time.time() * 1000) - parse_duration_ms(since)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from error
    try:
        backend = backend_of(settings)
    except DeviceUnavailableError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from error
    if nproc > 1 and not launched_by_torchrun():
        console.print(f"training in {nproc} processes (torchrun, {backend})")
        raise typer.Exit(run_under_torchrun(nproc, sys.argv[1:]))
    workers = ProcessGroup.from_environment(backend) if nproc > 1 else None
    config = trainer_config(
        settings,
        batch_size=batch_size,
        max_epochs=max_epochs,
        learning_rate=learning_rate,
        negative_rate=negative_rate,
        recall_k=recall_k,
        seed=seed,
    )
    examples: LoggedExamples | RoundHistory
    if simulate:
        with console.status("simulating history over the simulated world…"):
            world = local_world(settings)
            history = simulated_history(
                settings,
                world,
                world_topics(world),
                examples_per_round=simulate,
                seed=seed,
                rounds=rounds,
            )
            examples = _ShownHistory(history, history.first_run())
    else:
        examples = LoggedExamples(
            from_kafka=from_kafka, file=file, catalogue=catalogue, since_ms=since_ms, warm=warm
        )
    leader = workers is None or workers.leader
    try:
        train_and_publish(
            settings,
            examples,
            config,
            rounds=rounds,
            min_auc=min_auc,
            force=force,
            publish=publish,
            show_metrics=lambda metrics: _print(metrics, json_output),
            reporter=console_reporter(console) if leader else Reporter.logging_to(log),
            workers=workers,
        )
    except BelowAucGateError as below:
        console.print(f"[red]{below}[/]")
        if not report_status(3):
            raise typer.Exit(3) from below
    finally:
        if workers is not None:
            workers.close()


@dataclass(frozen=True)
class _ShownHistory:
    """The simulated history, its first round already made, its later work shown."""

    history: SimulatedHistory
    first: TrainingRun

    def first_run(self) -> TrainingRun:
        return self.first

    def next_round(self, run: TrainingRun, seed: int) -> TrainingRun:
        with console.status("simulating traffic logged by the trained model…"):
            return self.history.next_round(run, seed)

    def for_publishing(self, run: TrainingRun) -> TrainingRun:
        with console.status("embedding the simulated catalogue…"):
            return self.history.for_publishing(run)


def _print(metrics: dict[str, float], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(metrics, sort_keys=True))
        return
    table = Table("metric", "value", title="validation (latest decisions held out)")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(train)
