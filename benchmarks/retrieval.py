"""Candidate retrieval benchmark: CandidateIndex (hnswlib) against exact numpy search.

    .venv/bin/python benchmarks/retrieval.py --posts 100000          # quick
    .venv/bin/python benchmarks/retrieval.py --posts 1000000 --dim 64 --k 1000

Builds the index over clustered (or random) unit vectors with skewed languages,
countries, region locks and creation times, then runs the same eligibility-filtered
queries three ways in one run: the index's search (HNSW where a language partition is
large enough), the index's exact search (numpy over the user's language partitions),
and brute force over the whole catalogue (numpy matmul + argpartition, the naive
baseline). Prints recall@k of the index's search against exact, queries per second and
speed ratios, build time and memory. Every search runs on one thread (BLAS included),
as a serving thread would; ``--threads`` adds a concurrent-throughput run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one core per query
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from feedrank.core.feature_schema import COUNTRIES, LANGUAGES
from feedrank.core.time_units import DAY_MS
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig

LANGUAGE_SHARES = np.array([0.35, 0.2, 0.12, 0.1, 0.08, 0.07, 0.05, 0.03])
Search = Callable[["Query"], tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]


@dataclass(frozen=True)
class Catalogue:
    vectors: npt.NDArray[np.float32]
    language: npt.NDArray[np.int64]
    country: npt.NDArray[np.int64]
    region_locked: npt.NDArray[np.bool_]
    created_ms: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Query:
    vector: npt.NDArray[np.float32]
    languages: tuple[int, ...]
    country: int
    min_created_ms: int
    max_created_ms: int


@dataclass(frozen=True)
class Embedding:
    """How vectors are drawn: isotropic (``basis`` None, the worst case for HNSW) or
    clusters in a low-dimensional latent space mapped into ``dim`` dimensions, as trained
    embeddings are (their effective rank is far below their dimension)."""

    dim: int
    centres: npt.NDArray[np.float32] | None = None  # (clusters, latent_dim)
    basis: npt.NDArray[np.float32] | None = None  # (latent_dim, dim)

    @staticmethod
    def make(rng: np.random.Generator, args: argparse.Namespace) -> Embedding:
        if args.data == "random":
            return Embedding(args.dim)
        latent = args.latent_dim
        centres = rng.standard_normal((args.clusters, latent), dtype=np.float32)
        basis = rng.standard_normal((latent, args.dim), dtype=np.float32)
        basis /= np.float32(np.sqrt(latent))  # stays float32 (a float64 scalar would promote)
        return Embedding(args.dim, centres, basis)

    def draw(self, rng: np.random.Generator, count: int) -> npt.NDArray[np.float32]:
        """``count`` unit vectors."""
        if self.centres is None or self.basis is None:
            vectors = rng.standard_normal((count, self.dim), dtype=np.float32)
        else:
            latent = self.centres[rng.integers(len(self.centres), size=count)]
            latent += 0.5 * rng.standard_normal(latent.shape, dtype=np.float32)
            vectors = latent @ self.basis
            vectors += 0.1 * rng.standard_normal(vectors.shape, dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        assert vectors.dtype == np.float32, vectors.dtype
        return vectors


def make_catalogue(
    rng: np.random.Generator, args: argparse.Namespace, embedding: Embedding
) -> Catalogue:
    count = args.posts
    return Catalogue(
        vectors=embedding.draw(rng, count),
        language=rng.choice(len(LANGUAGES), size=count, p=LANGUAGE_SHARES).astype(np.int64),
        country=rng.integers(len(COUNTRIES), size=count, dtype=np.int64),
        region_locked=rng.random(count) < args.locked_fraction,
        created_ms=rng.integers(0, args.span_days * DAY_MS, size=count, dtype=np.int64),
    )


def make_queries(
    rng: np.random.Generator, args: argparse.Namespace, embedding: Embedding
) -> list[Query]:
    """Users speak a language drawn like the posts'; a fifth also read English."""
    now_ms = args.span_days * DAY_MS
    vectors = embedding.draw(rng, args.queries)
    queries = []
    for vector in vectors:
        language = int(rng.choice(len(LANGUAGES), p=LANGUAGE_SHARES))
        languages = (language, 0) if language != 0 and rng.random() < 0.2 else (language,)
        queries.append(
            Query(
                vector=vector,
                languages=languages,
                country=int(rng.integers(len(COUNTRIES))),
                min_created_ms=now_ms - args.max_age_days * DAY_MS,
                max_created_ms=now_ms,
            )
        )
    return queries


def brute_force(catalogue: Catalogue, query: Query, k: int) -> npt.NDArray[np.int64]:
    """The naive baseline: score every post, mask the ineligible, take the top k."""
    scores = catalogue.vectors @ query.vector
    eligible = (
        np.isin(catalogue.language, query.languages)
        & (catalogue.created_ms >= query.min_created_ms)
        & (catalogue.created_ms <= query.max_created_ms)
        & (~catalogue.region_locked | (catalogue.country == query.country))
    )
    scores[~eligible] = -np.inf
    top: npt.NDArray[np.int64] = np.argpartition(-scores, k - 1)[:k]
    keep: npt.NDArray[np.bool_] = eligible[top]
    return top[keep]


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build_index(catalogue: Catalogue, config: RetrievalConfig, console: Console) -> CandidateIndex:
    columns = (
        TextColumn("building index"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
    )
    with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("build", total=len(catalogue.vectors))
        return CandidateIndex.build(
            np.arange(len(catalogue.vectors), dtype=np.int64),
            catalogue.vectors,
            languages=catalogue.language,
            countries=catalogue.country,
            region_locked=catalogue.region_locked,
            created_ms=catalogue.created_ms,
            config=config,
            progress=lambda count: progress.advance(task, count),
        )


def throughput(search: Search, queries: list[Query], threads: int) -> float:
    """Queries per second with ``threads`` concurrent searchers."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(search, queries))
    return len(queries) / (time.perf_counter() - started)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--latent-dim", type=int, default=16, help="clustered: latent rank")
    parser.add_argument("--clusters", type=int, default=1024, help="clustered: how many")
    parser.add_argument("--M", type=int, default=RetrievalConfig.M)
    parser.add_argument("--ef-construction", type=int, default=RetrievalConfig.ef_construction)
    parser.add_argument("--ef-search", type=int, default=RetrievalConfig.ef_search)
    parser.add_argument("--fetch-factor", type=float, default=RetrievalConfig.fetch_factor)
    parser.add_argument("--exact-threshold", type=int, default=RetrievalConfig.exact_threshold)
    parser.add_argument("--ann-result-cost", type=float, default=RetrievalConfig.ann_result_cost)
    parser.add_argument("--span-days", type=int, default=14, help="posts created over this span")
    parser.add_argument("--max-age-days", type=int, default=7, help="eligible post age")
    parser.add_argument("--locked-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2, help="concurrent searchers")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


@dataclass(frozen=True)
class Measurements:
    recalls: npt.NDArray[np.float64]  # per query, ANN against exact
    results_per_query: float
    ann_seconds: npt.NDArray[np.float64]  # per query, one thread
    exact_seconds: npt.NDArray[np.float64]
    brute_seconds: npt.NDArray[np.float64]  # every fifth query
    exact_matches_brute_force: bool
    build_seconds: float = 0.0
    rss_growth_bytes: int = 0
    concurrent_qps: float | None = None


def index_search(index: CandidateIndex, k: int, *, exact: bool) -> Search:
    method = index.exact_search if exact else index.search

    def search(query: Query) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return method(
            query.vector,
            k,
            languages=query.languages,
            country=query.country,
            min_created_ms=query.min_created_ms,
            max_created_ms=query.max_created_ms,
        )

    return search


def measure(
    index: CandidateIndex, catalogue: Catalogue, queries: list[Query], args: argparse.Namespace
) -> Measurements:
    """The same queries through ANN, exact and brute-force search, interleaved query by
    query so that drift in the machine's speed hits all three alike."""
    ann = index_search(index, args.k, exact=False)
    exact = index_search(index, args.k, exact=True)
    seconds: dict[str, list[float]] = {"ann": [], "exact": [], "brute": []}
    recalls, sizes, agree = [], [], True
    for number, query in enumerate(queries):
        found: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        truth = found
        for method in ("ann", "exact") if number % 2 else ("exact", "ann"):  # alternate: caches
            started = time.perf_counter()
            if method == "ann":
                found = ann(query)[0]
            else:
                truth = exact(query)[0]
            seconds[method].append(time.perf_counter() - started)
        recalls.append(np.intersect1d(found, truth).size / max(truth.size, 1))
        sizes.append(found.size)
        if number % 5 == 0:
            started = time.perf_counter()
            brute = brute_force(catalogue, query, args.k)
            seconds["brute"].append(time.perf_counter() - started)
            agree = agree and set(brute.tolist()) == set(truth.tolist())
    return Measurements(
        recalls=np.array(recalls),
        results_per_query=float(np.mean(sizes)),
        ann_seconds=np.array(seconds["ann"]),
        exact_seconds=np.array(seconds["exact"]),
        brute_seconds=np.array(seconds["brute"]),
        exact_matches_brute_force=agree,
    )


def report(
    console: Console, args: argparse.Namespace, index: CandidateIndex, result: Measurements
) -> None:
    data = f"{args.data}, latent rank {args.latent_dim}" if args.data == "clustered" else "random"
    table = Table(title=f"{args.posts:,} posts x {args.dim} ({data}), k={args.k}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    config = index.config
    graphs = [code for language, code in enumerate(LANGUAGES) if index.has_graph(language)]
    recalls = result.recalls

    def timing(seconds: npt.NDArray[np.float64]) -> str:
        mean = float(seconds.mean())
        return f"{mean * 1e3:.2f} ms (median {np.median(seconds) * 1e3:.2f}), {1 / mean:,.0f} q/s"

    def speedup(baseline: npt.NDArray[np.float64]) -> str:
        mean = baseline.mean() / result.ann_seconds.mean()
        return f"{mean:.1f}x (medians: {np.median(baseline) / np.median(result.ann_seconds):.1f}x)"

    rows = [
        ("config", f"M={config.M} ef_construction={config.ef_construction}"),
        ("", f"ef_search={config.ef_search} fetch_factor={config.fetch_factor}"),
        ("eligible by age", f"last {args.max_age_days} of {args.span_days} days"),
        ("languages with an HNSW graph", ", ".join(graphs) or "none (all exact)"),
        ("build time", f"{result.build_seconds:.1f} s"),
        ("index memory (estimate)", f"{index.memory_bytes() / 2**20:,.0f} MiB"),
        ("RSS growth during build", f"{result.rss_growth_bytes / 2**20:,.0f} MiB"),
        (f"recall@{args.k} mean", f"{recalls.mean():.4f}"),
        (f"recall@{args.k} p5 / min", f"{np.percentile(recalls, 5):.4f} / {recalls.min():.4f}"),
        ("mean results per query", f"{result.results_per_query:.0f}"),
        ("index search (ANN), 1 thread", timing(result.ann_seconds)),
        ("exact search by language, 1 thread", timing(result.exact_seconds)),
        ("brute force, whole catalogue, 1 thread", timing(result.brute_seconds)),
        ("speed-up vs exact by language", speedup(result.exact_seconds)),
        ("speed-up vs brute force", speedup(result.brute_seconds)),
        ("exact search == brute force", str(result.exact_matches_brute_force)),
    ]
    if result.concurrent_qps is not None:
        rows.append(
            (f"ANN throughput, {args.threads} threads", f"{result.concurrent_qps:,.0f} q/s")
        )
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def main() -> None:
    args = parse_arguments()
    console = Console()
    rng = np.random.default_rng(args.seed)
    embedding = Embedding.make(rng, args)
    catalogue = make_catalogue(rng, args, embedding)
    queries = make_queries(rng, args, embedding)
    config = RetrievalConfig(
        dim=args.dim,
        M=args.M,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        fetch_factor=args.fetch_factor,
        exact_threshold=args.exact_threshold,
        ann_result_cost=args.ann_result_cost,
    )
    rss_before = resident_bytes()
    started = time.perf_counter()
    index = build_index(catalogue, config, console)
    build_seconds = time.perf_counter() - started
    rss_growth = resident_bytes() - rss_before
    result = dataclasses.replace(
        measure(index, catalogue, queries, args),
        build_seconds=build_seconds,
        rss_growth_bytes=rss_growth,
    )
    if args.threads > 1:
        search = index_search(index, args.k, exact=False)
        qps = throughput(search, queries, args.threads)
        result = dataclasses.replace(result, concurrent_qps=qps)
    report(console, args, index, result)


if __name__ == "__main__":
    main()
