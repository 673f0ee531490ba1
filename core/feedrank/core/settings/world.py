"""Settings of the simulated world the demo and benchmarks serve."""

from __future__ import annotations

from pydantic import Field, SecretStr

from feedrank.core.settings.group import SettingsGroup


class WorldSettings(SettingsGroup):
    """Size and seed of the simulated world the demo and benchmarks serve."""

    num_users: int = Field(default=10_000, ge=1, description="Simulated users.")
    num_creators: int = Field(default=2_000, ge=1, description="Simulated creators.")
    num_posts: int = Field(default=100_000, ge=1, description="Simulated posts.")
    seed: int = Field(default=7, description="Seed of the world and behaviour model.")
    start_ms: int = Field(
        default=0,
        ge=0,
        description="Epoch ms the world starts at; 0: when the process starts. "
        "`feedrank up` pins one value so every process sees the same posts.",
    )
    behaviour_seed: int = Field(default=11, description="Seed of the simulated users' draws.")
    publish_ahead_days: float = Field(
        default=0.0,
        ge=0,
        description="Days after the start over which new posts keep appearing (a long demo "
        "needs fresh posts, or engagement decays with the catalogue's age).",
    )

    rank_api_key: SecretStr | None = Field(
        default=None,
        description="The API key the simulated app sends to Rank, when the service requires "
        "one (explore.api_keys_file). Never printed.",
    )

    def start_or(self, now_ms: int) -> int:
        return self.start_ms or now_ms
