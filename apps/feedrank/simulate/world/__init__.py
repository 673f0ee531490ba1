"""The simulated world: seeded users, creators and posts, and how users behave.

Observable tables live on :class:`World`; ``World.hidden`` holds the ground truth that
only :class:`BehaviourModel` and its oracle methods read.
"""

from feedrank.simulate.world.behaviour import BehaviourModel
from feedrank.simulate.world.config import BehaviourConfig, WorldConfig, world_config
from feedrank.simulate.world.generator import (
    CreatorTable,
    HiddenParameters,
    PostTable,
    UserTable,
    World,
    generate_world,
)

__all__ = [
    "BehaviourConfig",
    "BehaviourModel",
    "CreatorTable",
    "HiddenParameters",
    "PostTable",
    "UserTable",
    "World",
    "WorldConfig",
    "generate_world",
    "world_config",
]
