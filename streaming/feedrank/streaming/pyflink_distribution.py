"""Where the Flink distribution inside the PyFlink package keeps its scripts and jars.

``pip install apache-flink`` ships a whole Flink: ``bin/`` (``flink``, ``jobmanager.sh``,
``taskmanager.sh``), ``lib/``, ``opt/`` and a default ``conf/``. The session cluster
(:mod:`feedrank.stack.flink_cluster`) and the join's submission
(:mod:`feedrank.streaming.cluster_join`) run them from there. Finding them does not
import PyFlink.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


class MissingPyFlinkError(RuntimeError):
    """PyFlink (``apache-flink``) is not installed in this environment."""


def pyflink_home() -> Path:
    """The PyFlink package directory (Flink's home: ``bin/``, ``lib/``, ``opt/``, ``conf/``)."""
    spec = importlib.util.find_spec("pyflink")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingPyFlinkError("PyFlink is not installed: run `make venv` (apache-flink)")
    return Path(next(iter(spec.submodule_search_locations)))


def flink_script(name: str) -> Path:
    """``bin/<name>`` of the distribution, e.g. ``flink`` or ``jobmanager.sh``."""
    return pyflink_home() / "bin" / name
