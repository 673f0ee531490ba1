"""Data-parallel batch training: examples/s at 1 and 2 processes, and the bytes each
process puts into collectives per step.

    .venv/bin/python -m benchmarks.distributed_training            # full run
    .venv/bin/python -m benchmarks.distributed_training --smoke --json

Each run is the real command, ``feedrank train --simulate N --nproc K --no-publish``
(torchrun workers, gloo, DDP for the dense layers, gathered sparse gradients for the id
tables) at the default model sizes, on a world of 20,000 posts. The runs alternate
1, 2, 1, 2, ... so both see the same box; the figure per K is the median of its runs.
Throughput is training examples x epochs / the epochs' wall time (reading, simulating
and evaluating left out), summed over the processes. On 2 cores the two processes
share the cores the single process had alone: the ratio measures the overhead, not a
speed-up (docs/learners.md has the scaling model for more machines).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.progress import progress

say = progress("distributed")
WORLD = {
    "WORLD__NUM_USERS": "2000",
    "WORLD__NUM_CREATORS": "200",
    "WORLD__NUM_POSTS": "20000",
}


def train_once(
    examples: int, epochs: int, nproc: int, state_dir: str, seed: int = 0
) -> dict[str, float]:
    environment = {
        **os.environ,
        **{f"FEEDRANK_{name}": value for name, value in WORLD.items()},
        "FEEDRANK_PATHS__STATE_DIR": state_dir,
    }
    command = [
        sys.executable,
        "-m",
        "feedrank.cli.main",
        "train",
        "--simulate",
        str(examples),
        "--max-epochs",
        str(epochs),
        "--min-auc",
        "0",
        "--no-publish",
        "--json",
        "--nproc",
        str(nproc),
        "--seed",
        str(seed),
    ]
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"nproc {nproc} failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith('{"auc"'))
    metrics: dict[str, float] = json.loads(line)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="Runs per process count.")
    parser.add_argument("--smoke", action="store_true", help="A small, fast run.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    arguments = parser.parse_args()
    if arguments.smoke:
        arguments.examples, arguments.epochs, arguments.repeats = 4_000, 1, 1
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="feedrank-ddp-bench-") as state_dir:
        for repeat in range(arguments.repeats):
            for nproc in (1, 2):
                say(
                    f"run {repeat + 1}/{arguments.repeats}, {nproc} process(es): "
                    f"{arguments.examples:,} examples x {arguments.epochs} epochs",
                )
                metrics = train_once(arguments.examples, arguments.epochs, nproc, state_dir)
                runs[nproc].append(metrics)
                say(
                    f"  {metrics['examples_per_second']:,.0f} examples/s, "
                    f"AUC {metrics['auc']:.4f}, log loss {metrics['log_loss']:.5f}",
                )
        say("for scale, the spread between seeds: 1 process, seed 1 (other init and data)")
        other_seed = train_once(arguments.examples, arguments.epochs, 1, state_dir, seed=1)
    one = statistics.median(run["examples_per_second"] for run in runs[1])
    two = statistics.median(run["examples_per_second"] for run in runs[2])
    last_two = runs[2][-1]
    report = {
        "examples": arguments.examples,
        "epochs": arguments.epochs,
        "repeats": arguments.repeats,
        "examples_per_s_1": round(one, 1),
        "examples_per_s_2": round(two, 1),
        "ratio_2_to_1": round(two / one, 3),
        "auc_1": round(runs[1][-1]["auc"], 4),
        "auc_2": round(last_two["auc"], 4),
        "log_loss_1": round(runs[1][-1]["log_loss"], 5),
        "log_loss_2": round(last_two["log_loss"], 5),
        "auc_1_seed_1": round(other_seed["auc"], 4),
        "log_loss_1_seed_1": round(other_seed["log_loss"], 5),
        "bytes_per_step": round(last_two["total_bytes_per_step"]),
        "dense_bytes_per_step": round(last_two["dense_bytes_per_step"]),
        "sparse_bytes_per_step": round(last_two["sparse_bytes_per_step"]),
        "other_bytes_per_step": round(last_two["other_bytes_per_step"]),
        "seconds": round(time.monotonic() - started, 1),
    }
    if arguments.json:
        print(json.dumps(report, indent=2))
        return
    print(f"examples/s: 1 process {one:,.0f}, 2 processes {two:,.0f} ({two / one:.2f}x)")
    print(
        f"AUC {report['auc_1']} vs {report['auc_2']} (seed 1: {report['auc_1_seed_1']}); "
        f"log loss {report['log_loss_1']} vs {report['log_loss_2']} "
        f"(seed 1: {report['log_loss_1_seed_1']})"
    )
    print(
        f"per step and process: {report['bytes_per_step']:,} bytes "
        f"(dense {report['dense_bytes_per_step']:,}, sparse {report['sparse_bytes_per_step']:,}, "
        f"other {report['other_bytes_per_step']:,})"
    )


if __name__ == "__main__":
    main()
