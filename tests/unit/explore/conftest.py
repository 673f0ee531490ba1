"""A small world, its feature store and catalogue, shared by the hot-swap unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from feedrank.catalogue import CatalogueState
from feedrank.core.clock import ManualClock
from feedrank.core.feature_schema import PostFeatureBatch
from feedrank.core.settings import ExploreSettings
from feedrank.explore.model_loader import ModelLoader, check_user_ids
from feedrank.features.store import InMemoryFeatureStore
from feedrank.registry import LocalModelRegistry
from feedrank.simulate.world import World
from feedrank.simulate.world.catalogue import catalogue_from_world
from tests.support.model_versions import all_posts, small_world

START_MS = 1_764_000_000_000


@dataclass(frozen=True)
class SwapWorld:
    world: World
    store: InMemoryFeatureStore
    catalogue: CatalogueState
    posts: PostFeatureBatch
    clock: ManualClock

    def loader(self, registry: LocalModelRegistry, **settings: float) -> ModelLoader:
        return ModelLoader(
            registry,
            self.store,
            self.catalogue,
            check_user_ids=check_user_ids(self.catalogue, 8),
            settings=ExploreSettings(**settings),  # type: ignore[arg-type]
            clock=self.clock,
        )


@pytest.fixture(scope="session")
def swap_world() -> SwapWorld:
    world = small_world(num_posts=3_000, num_users=300, start_ms=START_MS)
    catalogue = catalogue_from_world(world)
    store = InMemoryFeatureStore(catalogue)
    clock = ManualClock(START_MS)
    return SwapWorld(world, store, catalogue, all_posts(store, START_MS), clock)


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry")
