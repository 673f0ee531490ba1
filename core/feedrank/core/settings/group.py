"""The base of every settings group: frozen, and unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsGroup(BaseModel):
    """One group of settings (``[kafka]``, ``[explore]``, ...): immutable, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
