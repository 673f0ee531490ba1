"""A serving worker is one core: one torch thread and one BLAS thread."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from feedrank.explore.app import use_one_core


def test_a_worker_uses_one_torch_and_one_blas_thread() -> None:
    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools' threads on exit
        use_one_core()
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas, "numpy's BLAS was not found"
        assert {pool["num_threads"] for pool in blas} == {1}
        assert torch.get_num_threads() == 1
    torch.set_num_threads(torch_threads)
