"""Builds feedrank's C extension next to its source: ``python -m feedrank.core.native_build``.

One extension so far, ``_decision_items`` (:mod:`feedrank.core.decision_items`: the
decision log's item encoder). ``make native`` (part of ``make setup``) runs this for the
editable install; the Docker image runs it where pip installed the package. It needs a C
compiler (``$CC``, else ``cc``) and Python's headers; without them it says so and
exits 0, and explore writes the same bytes in Python, slower.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).with_name("_decision_items.c")
FLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC")


def build(source: Path = SOURCE, compiler: str | None = None) -> Path | None:
    """Compile ``source`` into the extension module beside it; None (and why, on stderr)
    where this machine cannot."""
    compiler = compiler or os.environ.get("CC") or "cc"
    include = Path(sysconfig.get_paths()["include"])
    if shutil.which(compiler) is None or not (include / "Python.h").is_file():
        print(
            f"no C compiler ({compiler}) or no Python headers ({include}): "
            "decisions are encoded in Python, slower",
            file=sys.stderr,
        )
        return None
    target = source.with_name(source.stem + sysconfig.get_config_var("EXT_SUFFIX"))
    for stale in source.parent.glob(f"{source.stem}.*.so"):
        stale.unlink()
    command = [compiler, *FLAGS, f"-I{include}", "-o", str(target), str(source)]
    subprocess.run(command, check=True)
    return target


if __name__ == "__main__":
    built = build()
    if built is not None:
        print(f"built {built}")
