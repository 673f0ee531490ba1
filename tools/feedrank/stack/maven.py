"""Maven and the JDK's tools, as the local stack runs them to fetch and build its JVM
pieces: one place that finds a tool and turns its failure into a clear error."""

from __future__ import annotations

import shutil
import subprocess


class JarFetchError(RuntimeError):
    """Maven could not provide a jar the local stack needs (or javac could not build one)."""


def require_tool(name: str, missing: str) -> str:
    """The path of the command ``name``; ``missing`` says how to get it when absent."""
    found = shutil.which(name)
    if found is None:
        raise JarFetchError(missing)
    return found


def run_checked(command: list[str], failure: str) -> None:
    """Run ``command``; when it fails, raise ``failure`` with the tail of its output."""
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-4000:]
        raise JarFetchError(f"{failure}:\n{output}")


def run_maven(*arguments: str) -> None:
    mvn = require_tool("mvn", "Maven (`mvn`) is not on PATH; install it (apt-get install maven)")
    command = [mvn, "--batch-mode", "--quiet", "--no-transfer-progress", *arguments]
    run_checked(command, f"`{' '.join(command)}` failed")
