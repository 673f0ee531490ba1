"""The demo's last word on the counterfactual gate: each learned version's off-policy
estimate (made before it got traffic) next to what its canary then measured.

The estimates come through the public contract: ``Deploy.ListModels`` gives every
version's registry metrics, which hold the learner's paired estimate against the stable
version (:class:`~feedrank.registry.off_policy.PairedEstimate`). The measurement is the
simulator's own ledger: for each version that served as a canary, its engagement rate
and the stable arm's in the same time buckets. The units differ (the estimate is the
joined reward per shown slot, the measurement engaged impressions per impression), so
the table and the plot compare their signs and sizes, not their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from rich.table import Table

from feedrank.core.arms import CANARY_ARM, STABLE_ARM
from feedrank.core.grpc_tls import open_channel
from feedrank.core.settings import TlsSettings
from feedrank.registry.off_policy import PairedEstimate
from feedrank.simulate.engagement import EngagementLedger, Tally
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc


@dataclass(frozen=True)
class CanaryMeasure:
    """A version's canary against the stable arm in the buckets where the canary served."""

    version: str
    canary_impressions: float
    canary_rate: float
    stable_rate: float

    @property
    def difference(self) -> float:
        return self.canary_rate - self.stable_rate


def version_estimates(
    deploy_address: str, tls: TlsSettings, timeout_s: float = 5.0
) -> dict[str, PairedEstimate]:
    """Each registry version's paired estimate, from ``Deploy.ListModels``."""
    with open_channel(deploy_address, tls) as channel:
        reply = deploy_pb2_grpc.DeployStub(channel).ListModels(
            deploy_pb2.ListModelsRequest(), timeout=timeout_s
        )
    estimates = {}
    for model in reply.models:
        estimate = PairedEstimate.from_metrics(dict(model.metrics))
        if estimate is not None:
            estimates[model.version] = estimate
    return estimates


def canary_measures(ledger: EngagementLedger) -> dict[str, CanaryMeasure]:
    """Each canary version's engagement rate and the stable arm's, same buckets."""
    series = ledger.series()
    stable: dict[int, Tally] = {}
    for arm, points in series.items():
        if arm.startswith(f"{STABLE_ARM}/"):
            for start_ms, tally in points:
                total = stable.setdefault(start_ms, Tally())
                total.impressions += tally.impressions
                total.engagements += tally.engagements
    measures = {}
    for arm, points in series.items():
        if not arm.startswith(f"{CANARY_ARM}/"):
            continue
        canary, beside = Tally(), Tally()
        for start_ms, tally in points:
            if tally.impressions and start_ms in stable:
                canary.impressions += tally.impressions
                canary.engagements += tally.engagements
                beside.impressions += stable[start_ms].impressions
                beside.engagements += stable[start_ms].engagements
        if canary.impressions and beside.impressions:
            version = arm.split("/", 1)[1]
            measures[version] = CanaryMeasure(version, canary.impressions, canary.rate, beside.rate)
    return measures


def ope_table(estimates: dict[str, PairedEstimate], measures: dict[str, CanaryMeasure]) -> Table:
    table = Table(title="off-policy estimate before traffic vs the canary's measurement")
    for column in ("version", "vs", "estimated diff (95% CI)", "ESS", "canary", "measured diff"):
        table.add_column(column, justify="right" if column != "version" else "left")
    table.caption = (
        "estimated: DR reward per slot of the version minus the stable one's on logged "
        "decisions, before any traffic; measured: the canary's engagement rate minus the "
        'stable arm\'s in the same buckets ("-": the version never served as a canary)'
    )
    for version in sorted(estimates):
        estimate = estimates[version]
        measured = measures.get(version)
        half_width = 1.96 * estimate.difference_std_error
        table.add_row(
            version,
            estimate.reference,
            f"{estimate.difference:+.4f} (±{half_width:.4f})",
            f"{estimate.effective_samples:,.0f}",
            f"{measured.canary_impressions:,.0f} imp." if measured else "-",
            f"{measured.difference:+.4f}" if measured else "-",
        )
    return table


def write_ope_plot(
    estimates: dict[str, PairedEstimate], measures: dict[str, CanaryMeasure], path: Path
) -> bool:
    """Estimated against measured difference, one point per version that was a canary
    (with the estimate's 95% interval); False when there is no such version."""
    both = sorted(set(estimates) & set(measures))
    if not both:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(7, 6), layout="constrained")
    for version in both:
        estimate, measured = estimates[version], measures[version]
        axes.errorbar(
            estimate.difference,
            measured.difference,
            xerr=1.96 * estimate.difference_std_error,
            fmt="o",
            capsize=3,
        )
        axes.annotate(version, (estimate.difference, measured.difference), fontsize=8)
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.axvline(0.0, color="grey", linewidth=0.8)
    axes.set_xlabel("estimated before traffic: DR reward per slot, version - stable")
    axes.set_ylabel("measured as a canary: engagement rate, canary - stable")
    axes.set_title("feedrank: the counterfactual gate's estimates vs the canaries")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def gate_report_lines(
    ledger: EngagementLedger, deploy_address: str, tls: TlsSettings, out_dir: Path
) -> list[object]:
    """The table and the plot's path, or one line saying why there are none."""
    try:
        estimates = version_estimates(deploy_address, tls)
    except grpc.RpcError as error:
        code = error.code().name if isinstance(error, grpc.Call) else "failed"
        return [f"no off-policy estimates: Deploy.ListModels at {deploy_address}: {code}"]
    if not estimates:
        return ["no version carries an off-policy estimate (learner.ope_window_s)"]
    measures = canary_measures(ledger)
    lines: list[object] = [ope_table(estimates, measures)]
    plot = out_dir / "ope_vs_canary.png"
    if write_ope_plot(estimates, measures, plot):
        lines.append(f"estimates vs canaries: {plot}")
    return lines
