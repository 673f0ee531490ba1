"""The job-building guard that keeps every gateway call of a planning on one Java thread,
and a client starting its own gateway whatever its parent left set."""

from __future__ import annotations

import gc
import os

import pytest

from feedrank.streaming.flink_environment import (
    GATEWAY_DISABLED_ENV,
    allow_own_gateway,
    planning_on_one_gateway_thread,
)


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


def test_a_client_drops_the_gateway_ban_its_parent_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a test runner that ran a local PyFlink job (its loopback Python workers) leaves
    # set; a benchmark it starts then failed at its first PyFlink call.
    monkeypatch.setenv(GATEWAY_DISABLED_ENV, "true")
    allow_own_gateway()
    assert GATEWAY_DISABLED_ENV not in os.environ
