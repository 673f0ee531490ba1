"""Where batch training runs: ``learner.device`` (cpu, cuda or auto).

``auto`` takes a GPU when torch sees one. Under torchrun, each process takes the GPU
of its local rank (``cuda:<LOCAL_RANK>``), and the processes talk over NCCL instead of
gloo. The online learner and the explore service's inference stay on the CPU: their
batches (micro-batches of a few hundred examples, one request's ~1,000 candidates) are
dominated by feature encoding in Python, and a GPU's transfers and launches would cost
more than its arithmetic saves (docs/learners.md).
"""

from __future__ import annotations

import os

import torch


class DeviceUnavailableError(RuntimeError):
    """``learner.device = cuda`` on a machine where torch sees no GPU."""


def training_device(setting: str) -> torch.device:
    """The device ``setting`` names on this machine (this torchrun process's GPU)."""
    if setting not in {"cpu", "cuda", "auto"}:
        raise ValueError(f"learner.device must be cpu, cuda or auto, got {setting!r}")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "learner.device is cuda, but torch sees no GPU here (set cpu or auto)"
        )
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def collective_backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"
