"""``feedrank train``: batch-train both models and publish them behind an AUC gate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from feedrank.catalogue.replay import missing_entity_topics, replay_catalogue
from feedrank.cli.context import settings_of
from feedrank.core.clock import SystemClock
from feedrank.core.settings import Settings
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.bootstrap import model_configs, trainer_config
from feedrank.learners.training_run import TrainingRun, logged_examples, publish_run
from feedrank.registry import LocalModelRegistry
from feedrank.simulate.training_history import SimulatedHistory, simulated_history
from feedrank.simulate.world_views import local_world, world_topics

console = Console()


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
    json_output: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train the two-tower and the ranker; print AUC, log loss, recall@K; publish if good."""

    settings = settings_of(context)
    learner = settings.learner
    torch.set_num_threads(learner.torch_threads)
    sources = sum([from_kafka, file is not None, simulate > 0])
    if sources != 1:
        raise typer.BadParameter("give exactly one of --from-kafka, --file or --simulate N")
    config = trainer_config(
        settings,
        batch_size=batch_size,
        max_epochs=max_epochs,
        learning_rate=learning_rate,
        negative_rate=negative_rate,
        recall_k=recall_k,
        seed=seed,
    )
    two_tower, ranker = model_configs(settings, seed)

    def fit(run: TrainingRun) -> TrainingRun:
        return _fit(run, config, BatchTrainer(config, two_tower=two_tower, ranker=ranker))

    history: SimulatedHistory | None = None
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
            run = history.first_run()
    else:
        run = _logged_run(settings, from_kafka=from_kafka, file=file, catalogue=catalogue)
    run = fit(run)
    if history is not None:
        for _ in range(rounds - 1):
            with console.status("simulating traffic logged by the trained model…"):
                run = history.next_round(run, seed)
            run = fit(run)
    assert run.report is not None
    assert run.trainer is not None
    metrics = {
        **run.report.metrics,
        "epochs": float(run.report.epochs),
        "examples": float(len(run.batch)),
    }
    _print(metrics, json_output)
    gate = learner.min_auc if min_auc is None else min_auc
    auc = metrics["auc"]
    if not np.isfinite(auc) or auc < gate:
        if not force:
            console.print(f"[red]AUC {auc:.4f} is below the gate {gate:.2f}: not published[/]")
            raise typer.Exit(3)
        console.print(f"[yellow]AUC {auc:.4f} is below the gate {gate:.2f}; --force given[/]")
    if publish:
        registry = LocalModelRegistry(settings.paths.registry)
        if history is not None:
            with console.status("embedding the simulated catalogue…"):
                run = history.for_publishing(run)
        version = publish_run(registry, run, metrics)
        console.print(f"published {version} to {settings.paths.registry}")


def _logged_run(
    settings: Settings, *, from_kafka: bool, file: Path | None, catalogue: bool
) -> TrainingRun:
    """Examples from Kafka or a file; with ``catalogue``, the catalogue topics replayed."""
    state = None
    missing = missing_entity_topics(settings) if catalogue else []
    if missing:
        console.print(f"[yellow]no catalogue topics {missing}: training on the logs alone[/]")
    elif catalogue:
        names = f"{settings.topics.posts}, {settings.topics.users}, {settings.topics.graph}"
        with console.status(f"replaying the catalogue from {names}…"):
            state = replay_catalogue(settings, SystemClock().now_ms).state
        console.print(
            f"catalogue: {state.live_rows().size:,} live posts, {state.num_users:,} users"
        )
    with console.status("reading examples…"):
        run = logged_examples(
            settings,
            from_kafka=from_kafka,
            file=file,
            catalogue=state,
            now_ms=SystemClock().now_ms(),
        )
    users, posts = run.backfilled
    if users or posts:
        console.print(
            f"features the logs lack filled from the catalogue: users of {users:,} examples, "
            f"posts of {posts:,}"
        )
    return run


def _fit(run: TrainingRun, config: TrainerConfig, trainer: BatchTrainer) -> TrainingRun:
    training_rows = len(run.batch) * (1 - config.validation_share)
    steps = config.max_epochs * math.ceil(training_rows / config.batch_size)
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(f"training on {len(run.batch):,} examples", total=steps)
        report = trainer.fit(run.batch, progress=lambda done: bar.advance(task, done))
    return run.trained(trainer, report)


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
