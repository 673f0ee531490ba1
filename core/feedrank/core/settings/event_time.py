"""Event-time settings: the reward window, the clock and the streaming join's tolerances."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from feedrank.core.settings.group import SettingsGroup
from feedrank.core.time_units import SECOND_MS


class TimeSettings(SettingsGroup):
    """Event time: the reward window and which clock components use."""

    reward_window: timedelta = Field(
        default=timedelta(days=14),
        description="How long after a decision a reward still counts: seconds or ISO 8601 (P14D).",
    )
    clock: Literal["system", "simulated"] = Field(
        default="system", description="'simulated' lets the simulator drive event time."
    )

    @field_validator("reward_window", mode="before")
    @classmethod
    def _seconds_from_text(cls, value: object) -> object:
        """Environment values arrive as text: accept plain seconds ("30") there too."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @field_validator("reward_window")
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("reward_window must be positive, e.g. 'P14D' or 1209600 (seconds)")
        return value

    @property
    def reward_window_ms(self) -> int:
        return int(self.reward_window.total_seconds() * SECOND_MS)


class JoinSettings(SettingsGroup):
    """The streaming join: event-time tolerances and where its checkpoints live."""

    max_skew_s: float = Field(
        default=60.0, ge=0, description="A reward this long before its decision still joins."
    )
    dangling_wait_s: float = Field(
        default=300.0, gt=0, description="How long a reward waits for its decision."
    )
    tombstone_hours: float = Field(
        default=24.0,
        gt=0,
        description="How long a closed decision is remembered (late vs dangling).",
    )
    out_of_orderness_s: float = Field(
        default=5.0, ge=0, description="Bounded out-of-orderness of the event-time watermark."
    )
    idleness_s: float = Field(
        default=10.0, gt=0, description="A partition idle this long stops holding the watermark."
    )
    aggregate_window_minutes: int = Field(
        default=5, ge=1, description="Event-time window of the aggregates on topics.metrics."
    )
    top_posts: int = Field(
        default=10, ge=0, description="Most engaged posts per aggregate window (0: none)."
    )
    engine: Literal["java", "python"] = Field(
        default="java",
        description="The join's keyed operator: 'java' (the Java engine, no Python per "
        "record; `feedrank setup` builds it) or 'python' (the embedded Python operator). "
        "Same semantics and output; a checkpoint of one does not restore into the other.",
    )
