"""CI-sized runs of the benchmarks: they run end to end and report sane numbers.

No timing is asserted here (that is what `benchmarks/` and docs/benchmarks.md are for);
these only keep the benchmark scripts working.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[3]


def run_benchmark(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_rank_load_smoke(jars: JarLocations) -> None:
    result = run_benchmark("-m", "benchmarks.rank_load", "--smoke", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["errors"] == 0
    assert report["posts"] == 20_000
    assert report["retrieval_ceiling_qps"] > 0
    assert report["saturation_qps_logging"] > 0
    assert report["saturation_qps_no_logging"] > 0
    assert math.isfinite(report["p99_ms_at_80pct"])
    assert report["p50_ms_at_80pct"] <= report["p99_ms_at_80pct"]
    assert 0 < report["queue_p50_ms_at_80pct"] <= report["queue_p99_ms_at_80pct"]
    assert report["service_ms_for_p99_target"] > 0
    assert report["p99_vs_queueing"] > 0
    assert report["pss_mb"] > 0
    assert report["broker_warm_up_s"] > 0  # the new broker was loaded while the world was built
    assert (report["rounds"], report["on_off_seconds"]) == (2, 4.0)  # --smoke's
    assert report["broker_cpu_ms_per_rank"] > 0
    assert report["broker_cpu_ms_per_rank_no_logging"] >= 0
    # Issue 23's cost ratios: served CPU against the in-process necessary work.
    costs = report["costs"]
    assert report["served_cpu_ms_per_rank"] > 0
    assert report["served_cpu_vs_necessary"] > 0
    assert costs["filtered_retrieval_ms"] > 0
    assert costs["dense_layers_ms"] > 0
    assert set(costs["variants"]) >= {"served", "user tower through torch modules"}
    assert all(cost["rank_ms"] > 0 for cost in costs["variants"].values())
    assert all(0 < cost["recall_at_k"] <= 1 for cost in costs["retrieval"].values())


def test_grpc_overhead_smoke() -> None:
    result = run_benchmark(
        "-m", "benchmarks.grpc_overhead", "--seconds", "1", "--client", "python", "--json"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    for server in ("sync", "aio"):
        assert report[server]["calls_per_s"] > 0
        assert report[server]["cpu_ms_per_call"] > 0
    assert report["aio_vs_sync_cpu"] > 0


def test_retrieval_smoke() -> None:
    result = run_benchmark(
        "benchmarks/retrieval.py", "--posts", "30000", "--k", "200", "--queries", "20"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recall" in result.stdout


def test_online_learner_smoke() -> None:
    result = run_benchmark("-m", "benchmarks.online_learner", "--smoke", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["examples_per_s"] > 0
    assert report["fake_negatives_examples_per_s"] > 0
    assert report["per_example_baseline_per_s"] > 0
    assert report["speedup_vs_baseline"] > 1


def test_training_quality_smoke() -> None:
    result = run_benchmark("-m", "benchmarks.training_quality", "--smoke", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert 0.0 <= report["held_out_auc"] <= 1.0
    assert report["engagement_rate_oracle"] >= report["engagement_rate_random"]


def test_online_quality_smoke() -> None:
    result = run_benchmark("-m", "benchmarks.online_quality", "--smoke", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    curve = report["curve"]
    assert [point["examples"] for point in curve][:2] == [0, 2_000]
    assert curve[-1]["examples"] >= 4_000
    assert all(0 < point["online_over_oracle"] <= 1.5 for point in curve)
    assert 0 < report["bootstrap_auc"] <= 1


def test_join_throughput_smoke(kafka: KafkaBroker) -> None:
    """Join and relay on the session broker, tiny sizes: every figure is there."""
    result = run_benchmark(
        "-m", "benchmarks.join_throughput", "--smoke", "--json", "--bootstrap", kafka.bootstrap
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["join_items_per_s"] > 0
    assert report["throughput_ratio_vs_relay"] > 0
    assert report["positives_measured"] > 0
    assert report["join_latency_p50_s"] <= report["join_latency_p95_s"]
    assert report["state_bytes_per_pending_decision"] > 0
    assert report["two_week_state_tb"] > 0


def test_serving_quality_smoke() -> None:
    result = run_benchmark(
        "-m", "benchmarks.serving_quality", "--smoke", "--json", "--also", "epsilon_greedy:0.05"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["feeds"] == 20
    ratios = {name: value for name, value in report.items() if name.endswith("_over_oracle")}
    assert len(ratios) == 9  # seven measures, and the --also policy expected and drawn
    assert "served_epsilon_greedy_0.05_realised_over_oracle" in ratios
    assert all(math.isfinite(value) and value >= 0 for value in ratios.values())
    # Nothing served beats the oracle's expected engagement on the same posts' universe.
    assert report["retrieved_oracle_over_oracle"] <= 1.0
    assert report["oracle_repeating_over_oracle"] >= 1.0  # a superset of posts to choose from
    assert report["served_over_oracle"] <= report["retrieved_oracle_over_oracle"]


def test_serve_restart_smoke(kafka: KafkaBroker) -> None:
    """`feedrank serve` started, restarted and measured over tiny topics on the session broker."""
    result = run_benchmark(
        *("-m", "benchmarks.serve_restart", "--smoke", "--json", "--with-version"),
        *("--bootstrap", kafka.bootstrap),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert (report["posts"], report["workers"]) == (3_000, 1)
    assert report["producer_posts_per_s"] > 0
    assert report["replay_only_s"] > 0
    assert report["first_start_s"] > 0
    assert report["restart_s"] > 0
    assert report["restart_vs_replay_only"] == round(
        report["restart_s"] / report["replay_only_s"], 3
    )
    assert report["rank_items"] > 0  # both starts answered Rank with items
    assert report["pss_gb"] > 0
    assert report["peak_pss_gb"] > 0
    for start in (report["first_start"], report["restart"]):
        phases = [start[name] for name in ("imports_s", "replay_s", "build_s", "workers_s")]
        assert all(phase is not None and phase >= 0 for phase in phases)
        assert start["stop_s"] > 0
    assert isinstance(report["restart_target_met"], bool)
    assert isinstance(report["pss_target_met"], bool)
    versioned = report["restart_with_version"]  # the plan's version loaded before the fork
    assert report["restart_with_version_s"] == versioned["serving_s"] > 0
    assert versioned["rank_items"] > 0
    assert isinstance(report["restart_with_version_target_met"], bool)
