"""A serving worker: one core (one torch and one BLAS thread), its background tasks."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from feedrank.explore.app import BackgroundBackend, use_one_core


def test_a_worker_uses_one_torch_and_one_blas_thread() -> None:
    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools' threads on exit
        use_one_core()
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas, "numpy's BLAS was not found"
        assert {pool["num_threads"] for pool in blas} == {1}
        assert torch.get_num_threads() == 1
    torch.set_num_threads(torch_threads)


class _Recorder:
    """Stands in for the updater, the follower and the service: records what closed."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def stop(self) -> None:
        self.log.append(f"{self.name} stopped")

    def close(self) -> None:
        self.log.append(f"{self.name} closed")

    def is_ready(self) -> bool:
        return True

    def arm_of(self, user_id: str) -> str:
        return f"arm of {user_id}"


def test_background_tasks_stop_before_the_backend_closes() -> None:
    log: list[str] = []
    backend = BackgroundBackend(
        _Recorder("service", log),  # type: ignore[arg-type]
        updater=_Recorder("updater", log),  # type: ignore[arg-type]
        follower=_Recorder("follower", log),  # type: ignore[arg-type]
    )
    assert backend.is_ready()
    assert backend.arm_of("u1") == "arm of u1"
    backend.close()
    assert log == ["updater stopped", "follower stopped", "service closed"]
