"""PyFlink's embedded mini-cluster as the local stack runs it: where its JVM logs go.

The job environments themselves (connector jar, parallelism, checkpoints) are
:mod:`feedrank.streaming.flink_environment`'s.
"""

from __future__ import annotations

import os

from feedrank.core.settings import Settings


def use_own_log_dir(settings: Settings) -> None:
    """Send this process's Flink (JVM) logs to ``<log_dir>/flink`` instead of the shared
    file inside the PyFlink package, which every Flink process would overwrite.

    Takes effect for the JVM started next, so call it before the first environment.
    """
    if "FLINK_LOG_DIR" not in os.environ:
        directory = settings.paths.log_dir / "flink"
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["FLINK_LOG_DIR"] = str(directory.resolve())
