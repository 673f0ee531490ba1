"""The M/D/c queue model against closed forms."""

from __future__ import annotations

import pytest

from benchmarks.queueing import deterministic_service_latency, service_time_for_p99


def test_an_m_d_1_queue_waits_as_the_pollaczek_khinchine_formula_says() -> None:
    # M/D/1 at load 0.5 with 1 s calls: mean wait = load / (2 (1 - load)) s = 0.5 s.
    latency = deterministic_service_latency(0.5, 1.0, servers=1, calls=200_000)
    assert latency.mean_ms == pytest.approx(1500, rel=0.03)
    assert latency.p50_ms >= 1000  # nobody is served faster than the service time
    assert latency.p50_ms < latency.p99_ms


def test_a_light_load_is_almost_all_service_time() -> None:
    latency = deterministic_service_latency(10, 0.001, servers=2, calls=20_000)
    assert latency.p50_ms == pytest.approx(1.0, rel=0.01)


def test_p99_scales_with_the_service_time_at_a_fixed_load() -> None:
    fast = deterministic_service_latency(160, 0.01, servers=2, calls=50_000)
    slow = deterministic_service_latency(80, 0.02, servers=2, calls=50_000)
    assert slow.p99_ms == pytest.approx(2 * fast.p99_ms, rel=1e-6)  # same draws, scaled
    service_s = service_time_for_p99(fast.p99_ms, load=0.8, servers=2, calls=50_000)
    assert service_s == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize(("qps", "service_s"), [(200, 0.01), (0, 0.01), (10, 0)])
def test_an_overloaded_or_empty_queue_is_refused(qps: float, service_s: float) -> None:
    with pytest.raises(ValueError, match=r"load|positive"):
        deterministic_service_latency(qps, service_s, servers=2)
