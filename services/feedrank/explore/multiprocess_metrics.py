"""Where the explore workers write their metrics, set up before any metric exists.

prometheus_client picks how it stores values (in process, or in per-process files
under ``PROMETHEUS_MULTIPROC_DIR`` that the parent aggregates on one ``/metrics``) when
it is imported, so :func:`prepare_multiprocess_metrics` must run before any other
explore module is imported. This module imports prometheus_client only inside it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from feedrank.core.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_metrics(settings: Settings) -> Path:
    """Empty ``<state_dir>/prometheus/explore``, point ``PROMETHEUS_MULTIPROC_DIR`` at it
    and make every metric created from here on write per process; returns the folder."""
    directory = settings.paths.state_dir / "prometheus" / "explore"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())
    # prometheus_client picks its value class from the environment when first imported,
    # and another module may have imported it already: pick again, so every metric
    # created from here on (the explore metrics) is written per process.
    from prometheus_client import values  # noqa: PLC0415 - this module never imports it early

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory
