"""Maven, as the local stack runs it to fetch (and build) its JVM pieces."""

from __future__ import annotations

import shutil
import subprocess


class JarFetchError(RuntimeError):
    """Maven could not provide a jar the local stack needs."""


def run_maven(*arguments: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Maven (`mvn`) is not on PATH; install it (apt-get install maven)")
    command = [mvn, "--batch-mode", "--quiet", "--no-transfer-progress", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-4000:]
        raise JarFetchError(f"`{' '.join(command)}` failed:\n{output}")
