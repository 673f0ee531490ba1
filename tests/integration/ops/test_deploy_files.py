"""The deployment files are valid for the real tools that read them."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_docker_compose_file_is_valid() -> None:
    result = run("docker-compose", "config", "-q")
    assert result.returncode == 0, result.stderr


def test_prometheus_config_is_valid() -> None:
    result = run("promtool", "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
