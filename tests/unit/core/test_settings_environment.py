from __future__ import annotations

import os
from datetime import timedelta

import pytest

from feedrank.core.settings import load_settings, settings_to_environment


def test_settings_survive_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in list(os.environ):
        if key.startswith("FEEDRANK_"):
            monkeypatch.delenv(key)
    original = load_settings(
        kafka={"broker_port": 19092},
        time={"reward_window": timedelta(seconds=30)},
        world={"num_posts": 1234},
        explore={"rules": {"freshness_weight": 0.5, "filters": frozenset({"seen", "hidden"})}},
        deploy={"steps": [0.2, 1.0]},
    )
    for key, value in settings_to_environment(original).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original
