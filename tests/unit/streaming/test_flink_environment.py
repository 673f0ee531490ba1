"""The job-building guard that keeps every gateway call of a planning on one Java thread."""

from __future__ import annotations

import gc

import pytest

from feedrank.streaming.flink_environment import planning_on_one_gateway_thread


def test_cyclic_collection_waits_until_the_job_is_built_and_resumes_after() -> None:
    assert gc.isenabled()
    with planning_on_one_gateway_thread():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_failed_build_still_resumes_collection() -> None:
    with pytest.raises(RuntimeError), planning_on_one_gateway_thread():
        raise RuntimeError("the planner failed")
    assert gc.isenabled()


def test_collection_stays_off_for_a_caller_that_turned_it_off() -> None:
    gc.disable()
    try:
        with planning_on_one_gateway_thread():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
