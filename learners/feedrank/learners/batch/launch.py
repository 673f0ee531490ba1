"""Starting ``feedrank train --nproc N``'s processes under ``torchrun``.

The command re-runs itself as N workers of ``torch.distributed.run --standalone`` (a
rendezvous on this machine); each joins the process group from the environment
torchrun gives it (:meth:`ProcessGroup.from_environment`). Several machines would run
torchrun on each with ``--nnodes`` and a shared rendezvous endpoint instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from feedrank.core.settings import Settings

ARGUMENTS_VARIABLE = "TORCHRUN_FEEDRANK_ARGUMENTS"  # not FEEDRANK_*: settings only
"""The workers' command-line arguments, as a JSON list: passed in the environment, since
torchrun's own parser would claim options such as ``--nproc`` from its command line."""


STATUS_VARIABLE = "TORCHRUN_FEEDRANK_STATUS"
"""A file the leader writes an expected failure's exit status to (below the AUC gate):
the workers then end normally, and the command exits with that status instead of
torchrun's report of a failed worker."""


def run_under_torchrun(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``feedrank <arguments>`` as ``nproc`` torchrun workers; their exit status
    (the leader's reported one, or torchrun's when a worker failed)."""
    with tempfile.TemporaryDirectory(prefix="feedrank-torchrun-") as directory:
        status = Path(directory) / "status"
        environment = {
            "OMP_NUM_THREADS": "1",  # torchrun's own default, set so it need not warn
            **os.environ,
            ARGUMENTS_VARIABLE: json.dumps(list(arguments)),
            STATUS_VARIABLE: str(status),
        }
        returned = subprocess.call(_torchrun(nproc), env=environment)
        if returned == 0 and status.exists():
            return int(status.read_text())
        return returned


def report_status(code: int) -> bool:
    """In a torchrun worker, leave ``code`` for the launching command to exit with
    (True); outside one, False: exit with it directly."""
    path = os.environ.get(STATUS_VARIABLE)
    if path is None:
        return False
    Path(path).write_text(str(code))
    return True


def _torchrun(nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "feedrank.cli.main",
    ]


def worker_arguments() -> list[str] | None:
    """The arguments a torchrun worker was started with (None outside one)."""
    passed = os.environ.get(ARGUMENTS_VARIABLE)
    return None if passed is None else [str(item) for item in json.loads(passed)]


def backend_of(settings: Settings) -> str:
    """The collective backend for ``learner.device``: NCCL on GPUs, gloo on CPUs."""
    # Imported here: torch costs `worker_arguments` (every `feedrank` run asks it) 2.9 s.
    from feedrank.learners.device import collective_backend, training_device  # noqa: PLC0415

    return collective_backend(training_device(settings.learner.device))
