"""What one Rank costs in process, stage by stage, against the work it cannot avoid.

    .venv/bin/python -m benchmarks.rank_cost                 # 1M posts, 100k users
    .venv/bin/python -m benchmarks.rank_cost --posts 200000  # quicker, for A/B runs

One thread, no gRPC, no broker: the explore service's pipeline (``ExploreService.rank``)
over a version with the learners' model shapes (a two-tower model and a ranker at their
default configs, seeded, untrained: their cost does not depend on their weights), the
decisions encoded but sent nowhere. Measured over the same queries:

* **bare hnswlib**: ``knn_query`` with k = candidates on the user's language's graph,
  no eligibility, no user tower: the retrieval ceiling's unit of work;
* **filtered retrieval**: the index's eligibility-filtered search as Rank calls it
  (the user's languages, country, age window);
* **dense layers**: the ranker's matrix products over the candidates (first layer,
  head, topic cross) on tensors of their real shapes;
* **Rank**: the whole pipeline, and each stage's share (the service's own stage
  timers), as served and as each A/B variant, in alternating rounds: the user tower
  through its torch modules, the ranker's static first layer precomputed
  (``rank_static_layer``), other over-fetch factors (each also with its recall@k
  against exact search).

The necessary work is filtered retrieval plus the dense layers; issue 23 asks a served
Rank's CPU to be at most 1.5 times that (``benchmarks/rank_load.py`` measures it served).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from prometheus_client import REGISTRY

from benchmarks.progress import progress
from benchmarks.rank_static_layer import StaticFirstLayer
from feedrank.catalogue import CatalogueState
from feedrank.core.clock import ManualClock, SystemClock
from feedrank.core.exploration import policy_from_name
from feedrank.core.feature_schema import FloatArray, IntArray
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import DAY_MS
from feedrank.explore.deadline import Deadline
from feedrank.explore.queries import RankQuery
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, index_catalogue
from feedrank.features.store import InMemoryFeatureStore
from feedrank.models.ann_index import CandidateIndex
from feedrank.models.packed_towers import PackedTowers
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from feedrank.simulate.world import generate_world, world_config
from feedrank.simulate.world.catalogue import catalogue_from_world

STAGES = ("features", "retrieve", "rank", "post_process", "explore", "log")
VERSION = "bench-v1"
SERVED = "served"
THROUGH_MODULES = "user tower through torch modules"  # the packed tower's A/B
STATIC_FIRST_LAYER = "static first layer precomputed"  # rank_static_layer's A/B
WARM_UP = 20  # calls before each timing
FETCH_FACTORS = (1.1, 1.5)  # over-fetch factors measured beside the served one
RECALL_QUERIES = 100
Search = Callable[..., tuple[IntArray, FloatArray]]  # CandidateIndex.search's signature


@dataclass(frozen=True)
class RankCost:
    """One way of serving: mean milliseconds per Rank, and per stage."""

    rank_ms: float
    stage_ms: dict[str, float]


@dataclass(frozen=True)
class RetrievalCost:
    """The filtered search at one over-fetch factor: its cost and its recall@k."""

    filtered_ms: float
    recall_at_k: float


@dataclass(frozen=True)
class StageCosts:
    """Milliseconds per call, in process, one thread; ``variants`` are the Rank A/Bs
    measured in the same run (``served`` is what the service runs)."""

    queries: int
    bare_hnsw_ms: float  # NaN when no language has a graph (every search is exact)
    filtered_retrieval_ms: float
    user_tower_ms: float
    dense_layers_ms: float
    retrieval: dict[str, RetrievalCost]  # by over-fetch factor
    variants: dict[str, RankCost]
    static_layer_mb: float  # the precomputed static first layer's table (an A/B variant)

    @property
    def necessary_ms(self) -> float:
        return self.filtered_retrieval_ms + self.dense_layers_ms

    @property
    def filtered_vs_bare(self) -> float:
        return self.filtered_retrieval_ms / self.bare_hnsw_ms

    @property
    def rank_ms(self) -> float:
        return self.variants[SERVED].rank_ms


def bench_version(
    catalogue: CatalogueState, store: InMemoryFeatureStore, now_ms: int, show_progress: bool
) -> ServingModel:
    """A servable version with the learners' default model shapes over ``catalogue``."""
    rows = catalogue.live_rows()
    posts = store.post_features(rows, now_ms)
    created_ms = np.asarray(catalogue.post_column("created_ms")[rows], dtype=np.int64)
    towers = PackedTowers(TwoTowerModel(TwoTowerConfig(seed=0)))  # as the loader serves them
    ranker = RankerModel(RankerConfig(seed=0))
    index = index_catalogue(towers, posts, created_ms, show_progress=show_progress)
    return ServingModel(VERSION, towers, ranker, index)


def through_modules(model: ServingModel) -> ServingModel:
    """``model`` encoding users through the user tower's torch modules instead of its
    packed form (the packed form's A/B)."""
    assert isinstance(model.two_tower, PackedTowers)
    return dataclasses.replace(model, two_tower=model.two_tower.model)


class DiscardedLog:
    """A decision log that keeps nothing: Rank still encodes every decision."""

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        return True

    def close(self) -> None:
        pass


def measure(
    settings: Settings,
    store: InMemoryFeatureStore,
    model: ServingModel,
    now_ms: int,
    queries: int,
    users: int,
) -> StageCosts:
    """The necessary work's parts and Rank's cost, served and as each A/B variant."""
    torch.set_num_threads(1)
    k = settings.explore.candidates
    max_age_ms = int(settings.explore.max_post_age_days * DAY_MS)
    chosen = [f"u{(index * 7919) % users}" for index in range(queries)]
    profiles = [store.user_features(user, now_ms) for user in chosen]
    vectors = model.two_tower.encode_users(profiles)

    # Retrieval is compared on the queries whose language has a graph (a small
    # partition is searched exactly: there is no hnswlib query to compare with).
    graphed = [i for i in range(queries) if model.index.has_graph(profiles[i].language)]
    searched = graphed or list(range(queries))  # no graph at all (a small catalogue)

    def bare(number: int) -> None:
        index = graphed[number % len(graphed)]
        graph = model.index._partitions[profiles[index].language].graph
        graph.knn_query(vectors[index], k=k, num_threads=1)

    def search(method: Search, number: int) -> IntArray:
        """The ``number``-th searched query, as Rank asks the index (``method``: search
        or exact_search); the posts found."""
        index = searched[number % len(searched)]
        found, _ = method(
            vectors[index],
            k,
            languages=[profiles[index].language],
            country=profiles[index].country,
            min_created_ms=now_ms - max_age_ms,
            max_created_ms=now_ms,
        )
        return found

    def filtered(number: int) -> None:
        search(model.index.search, number)

    def user_tower(index: int) -> None:
        model.two_tower.encode_users([profiles[index]])

    def recall(number: int) -> float:
        """Recall@k of the filtered search against the exact one, same eligibility."""
        exact = search(model.index.exact_search, number)
        found = search(model.index.search, number)
        return np.intersect1d(exact, found).size / max(exact.size, 1)

    served_factor = model.index.config.fetch_factor
    retrieval: dict[str, RetrievalCost] = {}
    for factor in dict.fromkeys([served_factor, *FETCH_FACTORS]):
        with fetch_factor(model.index, factor):
            retrieval[f"{factor:g}"] = RetrievalCost(
                filtered_ms=per_call_ms(filtered, queries),
                recall_at_k=float(np.mean([recall(number) for number in range(RECALL_QUERIES)])),
            )
    dense = dense_layers(model, k)
    assert isinstance(model.ranker, RankerModel)
    static = StaticFirstLayer(
        model.ranker, store, np.arange(store.num_posts, dtype=np.int64), now_ms
    )
    variants = {
        SERVED: (model, served_factor),
        THROUGH_MODULES: (through_modules(model), served_factor),
        STATIC_FIRST_LAYER: (dataclasses.replace(model, ranker=static), served_factor),
        **{f"fetch factor {factor:g}": (model, factor) for factor in FETCH_FACTORS},
    }
    # Alternating rounds, so a change in the box's speed during the run hits them all.
    rounds: dict[str, list[RankCost]] = {name: [] for name in variants}
    for _ in range(2):
        for name, (variant, factor) in variants.items():
            with fetch_factor(model.index, factor):
                rounds[name].append(rank_cost(settings, store, variant, now_ms, chosen))
    return StageCosts(
        queries=queries,
        bare_hnsw_ms=per_call_ms(bare, queries) if graphed else math.nan,
        filtered_retrieval_ms=retrieval[f"{served_factor:g}"].filtered_ms,
        user_tower_ms=per_call_ms(user_tower, queries),
        dense_layers_ms=per_call_ms(lambda _: dense(), queries),
        retrieval=retrieval,
        variants={name: mean_cost(costs) for name, costs in rounds.items()},
        static_layer_mb=static.table_bytes / 2**20,
    )


@contextmanager
def fetch_factor(index: CandidateIndex, factor: float) -> Iterator[None]:
    """``index`` searching with another over-fetch factor (the A/B of the setting)."""
    saved = index.config
    partitions = index._partitions  # each keeps the config too
    changed = dataclasses.replace(saved, fetch_factor=factor)
    index.config = changed
    for partition in partitions:
        partition.config = changed
    try:
        yield
    finally:
        index.config = saved
        for partition in partitions:
            partition.config = saved


def rank_cost(
    settings: Settings,
    store: InMemoryFeatureStore,
    model: ServingModel,
    now_ms: int,
    users: list[str],
) -> RankCost:
    """Rank for each of ``users`` through a service serving ``model``."""
    service = ExploreService(
        store=store,
        settings=settings.explore,
        policy=policy_from_name(
            settings.explore.exploration,
            epsilon=settings.explore.epsilon,
            temperature=settings.explore.temperature,
        ),
        clock=ManualClock(now_ms),
        decision_log=DiscardedLog(),  # type: ignore[arg-type]  # the one method Rank calls
    )
    service.load(model)

    def rank(index: int) -> None:
        query = RankQuery(
            user_id=users[index],
            limit=settings.explore.default_limit,
            request_time_ms=now_ms,
            language=None,
            country=None,
            surface="explore",
        )
        service.rank(query, Deadline.after(30.0))

    for index in range(min(len(users), WARM_UP)):
        rank(index)
    before = stage_totals()
    rank_ms = per_call_ms(rank, len(users), warm_up=False)
    after = stage_totals()
    return RankCost(
        rank_ms, {name: 1000 * (after[name] - before[name]) / len(users) for name in STAGES}
    )


def mean_cost(costs: list[RankCost]) -> RankCost:
    return RankCost(
        sum(cost.rank_ms for cost in costs) / len(costs),
        {name: sum(cost.stage_ms[name] for cost in costs) / len(costs) for name in STAGES},
    )


def dense_layers(model: ServingModel, candidates: int) -> Callable[[], None]:
    """The ranker's matrix products for one request of ``candidates`` posts."""
    ranker = model.ranker
    assert isinstance(ranker, RankerModel)
    generator = torch.Generator().manual_seed(0)
    user_context = torch.randn(1, ranker.user_context_layer.in_features, generator=generator)
    post_cross = torch.randn(candidates, ranker.post_cross_layer.in_features, generator=generator)
    topics = torch.rand(candidates, ranker.topic_interest.out_features, generator=generator)

    def run() -> None:
        with torch.no_grad():
            hidden = ranker.user_context_layer(user_context) + ranker.post_cross_layer(post_cross)
            logits = ranker.head(hidden).squeeze(1)
            _ = logits + (ranker.topic_interest(user_context) * topics).sum(dim=1)

    return run


def per_call_ms(step: Callable[[int], None], calls: int, *, warm_up: bool = True) -> float:
    """Mean wall milliseconds of ``step(i)`` over ``calls`` calls (after a warm-up)."""
    for index in range(min(calls, WARM_UP if warm_up else 0)):
        step(index)
    started = time.perf_counter()
    for index in range(calls):
        step(index)
    return 1000 * (time.perf_counter() - started) / calls


def stage_totals() -> dict[str, float]:
    """Seconds spent so far in each of the service's stages (its own histograms)."""
    return {
        name: REGISTRY.get_sample_value("feedrank_rank_stage_latency_seconds_sum", {"stage": name})
        or 0.0
        for name in STAGES
    }


def build(
    settings: Settings, show_progress: bool
) -> tuple[CatalogueState, InMemoryFeatureStore, ServingModel, int]:
    now_ms = SystemClock().now_ms()
    say = progress("rank_cost")
    say(f"generating a world of {settings.world.num_posts:,} posts")
    catalogue = catalogue_from_world(generate_world(world_config(settings.world, now_ms)))
    store = InMemoryFeatureStore(catalogue)
    say("embedding and indexing the posts")
    model = bench_version(catalogue, store, now_ms, show_progress)
    return catalogue, store, model, now_ms


def world_settings(posts: int, users: int, **explore: object) -> Settings:
    return load_settings(
        world={"num_posts": posts, "num_users": users, "num_creators": max(posts // 50, 10)},
        explore={"feature_updates": False, **explore},
    )


def print_costs(costs: StageCosts) -> None:
    print(f"in process, one thread, mean of {costs.queries} Rank calls:")
    print(f"  bare hnswlib k=candidates query : {costs.bare_hnsw_ms:6.3f} ms")
    print(
        f"  filtered retrieval              : {costs.filtered_retrieval_ms:6.3f} ms "
        f"= {costs.filtered_vs_bare:.2f} x bare (target <= 1.2)"
    )
    for factor, searched in costs.retrieval.items():
        print(
            f"    over-fetch {factor:<4}: {searched.filtered_ms:6.3f} ms "
            f"= {searched.filtered_ms / costs.bare_hnsw_ms:.2f} x bare, "
            f"recall@k {searched.recall_at_k:.3f} against exact"
        )
    print(f"  user tower                      : {costs.user_tower_ms:6.3f} ms")
    print(f"  ranker's dense layers           : {costs.dense_layers_ms:6.3f} ms")
    print(f"  necessary work (filtered + dense): {costs.necessary_ms:6.3f} ms")
    for name, cost in costs.variants.items():
        print(
            f"  Rank, {name:<26}: {cost.rank_ms:6.3f} ms "
            f"= {cost.rank_ms / costs.necessary_ms:.2f} x necessary"
        )
        print("    " + ", ".join(f"{stage} {value:.3f}" for stage, value in cost.stage_ms.items()))
    print(f"  (the precomputed static first layer's table: {costs.static_layer_mb:,.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the costs as JSON")
    args = parser.parse_args()
    settings = world_settings(args.posts, args.users)
    started = time.perf_counter()
    _, store, model, now_ms = build(settings, show_progress=False)
    print(f"built world and index in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    costs = measure(settings, store, model, now_ms, args.queries, args.users)
    if args.json:
        print(json.dumps({**asdict(costs), "necessary_ms": costs.necessary_ms}, indent=2))
    else:
        print_costs(costs)


if __name__ == "__main__":
    main()
