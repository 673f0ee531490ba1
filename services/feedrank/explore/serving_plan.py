"""What a worker should serve: model versions by arm, their traffic weights and the salt.

The contract is ``feedrank.v1.ServingPlan`` (``Deploy.GetServingPlan``). A plan file
uses the same message in protobuf's JSON mapping, e.g.::

    {"salt": "rollout-7",
     "arms": [{"arm": "stable", "model_version": "v0003", "weight": 0.95},
              {"arm": "canary", "model_version": "v0004", "weight": 0.05}]}

A plan with no arms means "nothing to serve from the registry yet": the worker keeps
what it serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf import json_format

from feedrank.v1 import deploy_pb2


class PlanError(ValueError):
    """A serving plan that breaks the contract (the message says what is accepted)."""


@dataclass(frozen=True)
class ArmPlan:
    arm: str
    model_version: str
    weight: float


@dataclass(frozen=True)
class ServingPlan:
    arms: tuple[ArmPlan, ...]
    salt: str = ""

    def __post_init__(self) -> None:
        names = [item.arm for item in self.arms]
        if len(set(names)) != len(names) or not all(names):
            raise PlanError(f"arm names must be non-empty and distinct, got {names}")
        for item in self.arms:
            if not item.model_version:
                raise PlanError(f"arm {item.arm!r} names no model_version")
            if not math.isfinite(item.weight) or item.weight < 0:
                raise PlanError(f"arm {item.arm!r}: weight must be finite and >= 0")
        if self.arms and math.fsum(item.weight for item in self.arms) <= 0:
            raise PlanError("at least one arm needs a positive weight")

    @property
    def weights(self) -> dict[str, float]:
        return {item.arm: item.weight for item in self.arms}

    @property
    def versions(self) -> dict[str, str]:
        """Model version by arm."""
        return {item.arm: item.model_version for item in self.arms}

    def describe(self) -> str:
        """``stable=v0003@0.95 canary=v0004@0.05`` for logs."""
        return " ".join(f"{a.arm}={a.model_version}@{a.weight:.4g}" for a in self.arms) or "empty"

    @classmethod
    def from_proto(cls, message: deploy_pb2.ServingPlan) -> ServingPlan:
        arms = tuple(ArmPlan(a.arm, a.model_version, a.weight) for a in message.arms)
        return cls(arms, message.salt)

    def to_proto(self) -> deploy_pb2.ServingPlan:
        return deploy_pb2.ServingPlan(
            arms=[
                deploy_pb2.ServingArm(arm=a.arm, model_version=a.model_version, weight=a.weight)
                for a in self.arms
            ],
            salt=self.salt,
        )

    @classmethod
    def from_json(cls, text: str) -> ServingPlan:
        """Parse the JSON mapping of ``feedrank.v1.ServingPlan`` (unknown fields rejected)."""
        try:
            message = json_format.Parse(text, deploy_pb2.ServingPlan())
        except json_format.ParseError as error:
            raise PlanError(f"not a feedrank.v1.ServingPlan in JSON: {error}") from error
        return cls.from_proto(message)

    def to_json(self) -> str:
        return json_format.MessageToJson(self.to_proto(), preserving_proto_field_name=True)
