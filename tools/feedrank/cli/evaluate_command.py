"""``feedrank evaluate``: off-policy estimates (IPS, SNIPS, DR) of a target policy on logged
decisions, next to the logging policy's own value. Formulas: docs/replay-and-evaluation.md."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from feedrank.cli.context import settings_of
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.core.time_units import parse_duration_ms
from feedrank.learners.evaluation import (
    REWARD_MODELS,
    Estimate,
    EvaluationReport,
    TargetPolicyError,
    Weighting,
    evaluate,
)
from feedrank.learners.evaluation.report import compare
from feedrank.learners.evaluation.sources import LoadedLogs, load_logs
from feedrank.learners.evaluation.target import (
    TARGET_PROBABILITY,
    per_row_target_columns,
    supplied_target,
)
from feedrank.learners.replay import ReplayFormatError

console = Console()
error_console = Console(stderr=True)


class LogFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


class RewardModelName(StrEnum):
    ridge = "ridge"
    position_mean = "position-mean"


class WeightingName(StrEnum):
    cascade = "cascade"
    item = "item"


def evaluate_command(
    context: typer.Context,
    *,
    logs: Annotated[
        Path | None,
        typer.Option(help="Replay file (CSV or Parquet) of logged decisions and rewards."),
    ] = None,
    from_examples: Annotated[
        bool,
        typer.Option(
            "--from-kafka", help="Read logged data from the examples topic instead of --logs."
        ),
    ] = False,
    examples_topic: Annotated[
        str | None, typer.Option(help="Examples topic (default: topics.examples).")
    ] = None,
    target_probabilities: Annotated[
        str,
        typer.Option(
            help="Target probabilities of the logged actions: a column of --logs, or a CSV/"
            "Parquet file keyed by decision_id and position (or by line).",
        ),
    ] = TARGET_PROBABILITY,
    target_column: Annotated[
        str, typer.Option(help="Column holding the probabilities in a target file.")
    ] = TARGET_PROBABILITY,
    file_format: Annotated[
        LogFormat | None, typer.Option("--format", help="Format of --logs (default: suffix).")
    ] = None,
    reward_model: Annotated[
        RewardModelName, typer.Option(help="DR baseline reward model.")
    ] = RewardModelName.ridge,
    weighting: Annotated[
        WeightingName,
        typer.Option(help="cascade: product of ratios over earlier slots; item: this slot's."),
    ] = WeightingName.cascade,
    version: Annotated[
        str | None,
        typer.Option(
            help="Evaluate a registry version: it re-ranks each logged decision's exploration "
            "pool (feedrank.decisions; labels from feedrank.examples) as explore would serve it.",
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            help="With --version: also evaluate this version (e.g. the stable one) on the same "
            "decisions, and the DR difference between the two with its paired interval.",
        ),
    ] = None,
    since: Annotated[
        str,
        typer.Option(
            help="With --version: the decisions logged this long before now (90m, 2h, 1d)."
        ),
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Estimate a target policy's value per shown slot from logged decisions: supplied
    target probabilities, or a registry version (--version, --against)."""
    settings = settings_of(context)
    if version is not None:
        if logs is not None or from_examples:
            error_console.print(
                "[red]cannot evaluate:[/] --version reads Kafka itself; drop --logs"
            )
            raise typer.Exit(2)
        evaluate_versions(
            settings,
            version,
            against=against,
            since=since,
            weighting=weighting.value,
            as_json=as_json,
        )
        return
    if against is not None:
        error_console.print("[red]cannot evaluate:[/] --against needs --version")
        raise typer.Exit(2)
    try:
        loaded = load_logs(
            logs,
            kafka=from_examples,
            bootstrap=settings.kafka.access,
            topic=examples_topic or settings.topics.examples,
            file_format=file_format.value if file_format else None,
            per_row_columns=per_row_target_columns(target_probabilities),
        )
        data, target = supplied_target(loaded.logs, target_probabilities, target_column)
        report = evaluate(
            data,
            target,
            reward_model=REWARD_MODELS[reward_model.value],
            weighting=weighting.value,
        )
    except (ReplayFormatError, TargetPolicyError, ValueError, KafkaException) as error:
        error_console.print(f"[red]cannot evaluate:[/] {error}")
        raise typer.Exit(2) from error
    _report_rejected(loaded)
    if as_json:
        document = {"source": loaded.source, "rejected_rows": len(loaded.rejected)}
        print(json.dumps({**document, **report.to_dict()}, indent=2))
    else:
        _print_table(loaded.source, report)


def _report_rejected(loaded: LoadedLogs) -> None:
    if loaded.rejected:
        error_console.print(f"[yellow]{len(loaded.rejected)} rows left out:[/]")
        for reason in loaded.rejected[:10]:
            error_console.print(f"  {reason}")
    if not loaded.complete:
        error_console.print("[yellow]the topic was not read to its end before the timeout[/]")


def _print_table(source: str, report: EvaluationReport) -> None:
    table = Table(
        title=f"off-policy evaluation ({report.weighting} weights) of {source}",
        title_justify="left",
    )
    table.add_column("estimator")
    for name in ("value per slot", "95% CI", "ESS", "decisions"):
        table.add_column(name, justify="right")
    for estimate in (*report.estimates, report.logging):
        table.add_row(*_cells(estimate))
    console.print(table)
    diagnostics = report.diagnostics
    console.print(
        f"mean weight {diagnostics.mean_weight:.3f} (≈ 1 when the logs support the target), "
        f"max weight {diagnostics.max_weight:.1f}, "
        f"rows the target never shows {diagnostics.zero_target_share:.1%}"
    )


def _cells(estimate: Estimate) -> tuple[str, str, str, str, str]:
    return (
        estimate.estimator,
        f"{estimate.value:.5f}",
        f"[{estimate.ci_low:.5f}, {estimate.ci_high:.5f}]",
        f"{estimate.ess:,.0f}",
        f"{estimate.decisions:,}",
    )


def evaluate_versions(
    settings: Settings,
    version: str,
    *,
    against: str | None,
    since: str,
    weighting: Weighting,
    as_json: bool,
) -> None:
    """``feedrank evaluate --version``: one version (or two, paired) on logged decisions."""
    # Imported here: the registry and the models pull in torch.
    from feedrank.learners.evaluation.version_logs import (  # noqa: PLC0415
        read_version_logs,
        version_policy,
    )
    from feedrank.registry import RegistryError  # noqa: PLC0415

    reporter = Reporter(say=error_console.print, warn=_in_yellow, working=error_console.status)
    try:
        since_ms = int(time.time() * 1000) - parse_duration_ms(since)
        loaded = read_version_logs(settings, since_ms=since_ms, reporter=reporter)
        if loaded.logs.num_rows == 0:
            raise ValueError(
                f"no decision logged in the last {since} has its pool and all its labels "
                f"(read {loaded.decisions_read:,}; left out: {loaded.skipped_summary()})"
            )
        candidate = version_policy(settings, version, loaded.supports)
        with error_console.status(f"re-ranking {loaded.logs.num_decisions:,} decisions…"):
            if against is None:
                report = evaluate(loaded.logs, candidate, weighting=weighting)
            else:
                reference = version_policy(settings, against, loaded.supports)
                comparison = compare(loaded.logs, candidate, reference, weighting=weighting)
    except (RegistryError, TargetPolicyError, ValueError, KafkaException) as error:
        error_console.print(f"[red]cannot evaluate:[/] {error}")
        raise typer.Exit(2) from error
    error_console.print(
        f"{loaded.logs.num_decisions:,} of {loaded.decisions_read:,} decisions of the last "
        f"{since} evaluated (left out: {loaded.skipped_summary()})"
    )
    source = f"decisions of the last {since}"
    if against is None:
        if as_json:
            print(json.dumps({"source": source, "version": version, **report.to_dict()}, indent=2))
        else:
            _print_table(f"{version} on {source}", report)
        return
    if as_json:
        document = {"source": source, "version": version, "against": against}
        print(json.dumps({**document, **comparison.to_dict()}, indent=2))
        return
    _print_table(f"{version} on {source}", comparison.candidate)
    _print_table(f"{against} on the same decisions", comparison.reference)
    difference = comparison.difference
    console.print(
        f"{version} - {against} (DR, paired): {difference.value:+.5f} "
        f"[{difference.ci_low:+.5f}, {difference.ci_high:+.5f}] per slot, ESS {difference.ess:,.0f}"
    )


def _in_yellow(message: str) -> None:
    error_console.print(f"[yellow]{message}[/]")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
