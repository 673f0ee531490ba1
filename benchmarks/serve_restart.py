"""Explore restart benchmark: ``feedrank serve`` over a big catalogue, back to SERVING.

    .venv/bin/python -m benchmarks.serve_restart --posts 1000000   # the issue's size
    .venv/bin/python -m benchmarks.serve_restart --smoke --json    # seconds, for CI

Starts a KRaft broker of its own (``benchmarks/local_broker.py``; ``--bootstrap`` uses
another), creates fresh entity topics with the production compaction settings
(``feedrank.stack.topics.entity_topics``) and publishes ``--posts`` synthetic posts
(``catalogue_ingest.PostMaker``: 32-d embedding, 1-3 topics, two features) and one user
per 50 posts with ``EventProducer``, streaming (a chunk of posts at a time). Then:

* the baseline: ``catalogue.replay.replay_catalogue`` in this process over the same
  topics (consume, decode, apply; no interpreter start, no embedding, no index);
* the first start: the real ``feedrank serve`` as a subprocess (``--no-log-decisions``,
  ``explore.feature_updates`` off, a fresh state dir), timed from spawn to gRPC health
  SERVING for ``feedrank.v1.Ranking``. Its phases come from its output lines and its
  process tree: imports (spawn -> "replaying the catalogue"), replay (-> "catalogue: ..."),
  embed + index (-> the first worker forked), workers (-> SERVING), and all workers up
  (-> "serving Ranking on"). Then one Rank call per worker (fresh channels) must return
  items, and the server is stopped with SIGTERM;
* the restart: the same command over the same topics, timed the same way;
* memory: PSS (``/proc/<pid>/smaps_rollup``) of the serve process and every process
  under it, summed: sampled every 0.5 s during each start-up (the peak) and, for
  ``pss_gb``, after the restart serves and has answered the Rank calls.

GB here is 10^9 bytes. Targets (issue 17): the restart back to SERVING in <= 60 s and
the serving processes' PSS <= 2.5 GB. The restart is also given as a ratio against the
in-process replay alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from confluent_kafka.admin import AdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.catalogue_ingest import PostMaker
from benchmarks.local_broker import broker, free_port
from benchmarks.restart_version import publish_catalogue_version, write_plan
from feedrank.catalogue.replay import replay_catalogue
from feedrank.client.events import EventProducer, TopicNames
from feedrank.core.clock import SystemClock
from feedrank.core.entity_codecs import AGE_BUCKET_NAMES
from feedrank.core.feature_schema import COUNTRIES, LANGUAGES
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, TopicSettings, load_settings
from feedrank.stack.topics import entity_topics
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

RESTART_TARGET_S = 60.0
PSS_TARGET_GB = 2.5
POSTS_PER_USER = 50
CHUNK_POSTS = 10_000  # posts drawn, then produced, at a time: 1M never sit in memory
PSS_SAMPLE_S = 0.5
TREE_POLL_S = 0.1  # how often the serve process's children are looked for
HEALTH_POLL_S = 0.1
SERVICE = "feedrank.v1.Ranking"
RANK_USER = "u-0"
GB = 1e9


def say(message: str) -> None:
    print(f"[serve-restart {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The catalogue -------------------------------------------------------------------------


def publish_catalogue(producer: EventProducer, posts: int, users: int, seed: int) -> float:
    """``users`` users, then ``posts`` posts; posts/s of the posts' ``upsert_post`` calls
    and the final flush (each chunk's fields are drawn before its clock starts)."""
    now_ms = SystemClock().now_ms()
    for index in range(users):
        producer.upsert_user(
            f"u-{index}",
            language=LANGUAGES[index % len(LANGUAGES)],
            country=COUNTRIES[index % len(COUNTRIES)],
            age_bucket=AGE_BUCKET_NAMES[index % len(AGE_BUCKET_NAMES)],
            ts_ms=now_ms,
        )
    producer.flush(120.0)
    maker = PostMaker(seed, now_ms)
    producing = 0.0
    step = max(posts // 10, 1)
    for first in range(0, posts, CHUNK_POSTS):
        chunk = [maker.fields(index) for index in range(first, min(first + CHUNK_POSTS, posts))]
        started = time.perf_counter()
        for index, fields in enumerate(chunk, start=first):
            producer.upsert_post(f"post-{index}", ts_ms=now_ms, **fields)
        producing += time.perf_counter() - started
        done = first + len(chunk)
        if done // step > first // step or done == posts:
            say(f"produced {done:,}/{posts:,} posts")
    started = time.perf_counter()
    producer.flush(600.0)
    return posts / (producing + time.perf_counter() - started)


def replay_only_s(settings: Settings, posts: int) -> float:
    """The baseline: seconds to replay the topics in this process (consume, decode, apply)."""
    started = time.perf_counter()
    replayed = replay_catalogue(settings, SystemClock().now_ms)
    elapsed = time.perf_counter() - started
    if replayed.state.num_posts != posts or replayed.rejected:
        raise RuntimeError(
            f"the replay found {replayed.state.num_posts:,} posts of {posts:,} "
            f"({replayed.rejected:,} rejected)"
        )
    return elapsed


# Processes and their memory ------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and every live process under it (from /proc/<pid>/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of ``pids`` summed (processes gone meanwhile count 0)."""
    total_kib = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total_kib += int(line.split()[1])
    return total_kib * 1024


class ServeProcess:
    """One ``feedrank serve``: its output lines timed from spawn, its process tree
    watched (the first child forked, the peak PSS of the tree) until :meth:`served`."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: list[tuple[float, str]] = []
        self.first_child_s: float | None = None
        self.peak_pss = 0
        self._watching = True
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def since_spawn(self) -> float:
        return time.perf_counter() - self.spawned

    def line_s(self, prefix: str) -> float | None:
        """Seconds from spawn to the first output line starting with ``prefix``."""
        return next((at for at, line in list(self.lines) if line.startswith(prefix)), None)

    def wait_line(self, prefix: str, timeout_s: float) -> float:
        deadline = time.perf_counter() + timeout_s
        while (at := self.line_s(prefix)) is None:
            self.check_running()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"feedrank serve printed no {prefix!r} in {timeout_s} s")
            time.sleep(HEALTH_POLL_S)
        return at

    def served(self) -> None:
        """Start-up is over: stop the peak sampling. A fork the poll had not seen yet (the
        workers were up within one ``TREE_POLL_S``) is dated now."""
        self._watching = False
        self._threads[1].join()
        if self.first_child_s is None and len(process_tree(self.process.pid)) > 1:
            self.first_child_s = self.since_spawn()

    def pss(self) -> int:
        return pss_bytes(process_tree(self.process.pid))

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"feedrank serve exited ({self.process.returncode}):\n{self.output_tail()}"
            )

    def terminate(self, timeout_s: float = 120.0) -> float:
        """SIGTERM and wait: the seconds it took to exit (RuntimeError unless it exits 0)."""
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout_s)
        self._threads[0].join(10.0)
        if self.process.returncode != 0:
            raise RuntimeError(
                f"feedrank serve exited {self.process.returncode}:\n{self.output_tail()}"
            )
        return time.perf_counter() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output_tail(self, lines: int = 40) -> str:
        return "\n".join(line for _, line in self.lines[-lines:])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip()
            self.lines.append((self.since_spawn(), line))
            say(f"serve | {line}")

    def _watch(self) -> None:
        pid = self.process.pid
        next_sample = 0.0
        while self._watching and self.process.poll() is None:
            tree = process_tree(pid)
            if self.first_child_s is None and len(tree) > 1:
                self.first_child_s = self.since_spawn()
            if time.perf_counter() >= next_sample:
                self.peak_pss = max(self.peak_pss, pss_bytes(tree))
                next_sample = time.perf_counter() + PSS_SAMPLE_S
            time.sleep(TREE_POLL_S)


@contextmanager
def serve_process(command: list[str], env: dict[str, str]) -> Iterator[ServeProcess]:
    server = ServeProcess(command, env)
    try:
        yield server
    finally:
        server.kill()  # only if something failed before it was stopped


# One start -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """One start of ``feedrank serve``: seconds from spawn, phases as durations."""

    serving_s: float  # spawn -> health SERVING (the first worker serves)
    all_workers_s: float  # spawn -> "serving Ranking on" (every worker serves)
    imports_s: float | None  # spawn -> "replaying the catalogue" (interpreter, imports)
    replay_s: float | None  # -> "catalogue: N posts" (consume, decode, apply)
    build_s: float | None  # -> the first worker forked (post tower, index build)
    workers_s: float | None  # -> SERVING (fork, backend, gRPC server)
    first_rank_ms: float
    rank_items: int  # the fewest items a Rank call returned
    peak_pss_gb: float  # during start-up, every 0.5 s
    pss_gb: float  # once serving, after the Rank calls
    stop_s: float  # SIGTERM -> exited


def wait_serving(address: str, server: ServeProcess, timeout_s: float) -> float:
    """Seconds from spawn until health says SERVING (a fresh channel per probe: a kept
    channel's reconnect back-off would hide the moment the port opens)."""
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    serving = health_pb2.HealthCheckResponse.SERVING
    while server.since_spawn() < timeout_s:
        server.check_running()
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                if stub.Check(request, timeout=1.0).status == serving:
                    return server.since_spawn()
            except grpc.RpcError:
                pass
        time.sleep(HEALTH_POLL_S)
    raise TimeoutError(f"feedrank serve was not SERVING within {timeout_s} s")


def rank_items(address: str, calls: int) -> tuple[float, int]:
    """``calls`` Rank calls on fresh channels (spread over the workers): the first one's
    latency in ms and the fewest items any returned (RuntimeError when one is empty)."""
    fewest, first_ms = sys.maxsize, 0.0
    for call in range(calls):
        with grpc.insecure_channel(address) as channel:
            stub: Any = ranking_pb2_grpc.RankingStub(channel)
            started = time.perf_counter()
            response = stub.Rank(ranking_pb2.RankRequest(user_id=RANK_USER, limit=10), timeout=30)
            if call == 0:
                first_ms = 1000 * (time.perf_counter() - started)
        fewest = min(fewest, len(response.items))
    if fewest == 0:
        raise RuntimeError(f"a Rank call for {RANK_USER} returned no items")
    return first_ms, fewest


def between(start: float | None, end: float | None) -> float | None:
    """Seconds from ``start`` to ``end``; 0 when the process-tree poll (every
    ``TREE_POLL_S``) saw the fork only after ``end`` (workers ready within one poll)."""
    return None if start is None or end is None else round(max(end - start, 0.0), 2)


def start_once(
    command: list[str], env: dict[str, str], address: str, args: argparse.Namespace, label: str
) -> Start:
    """Start ``feedrank serve``, wait for SERVING, call Rank, measure, stop it."""
    say(f"{label}: starting feedrank serve ({args.workers} workers)")
    with serve_process(command, env) as server:
        serving_s = wait_serving(address, server, args.start_timeout_s)
        all_workers_s = server.wait_line("serving Ranking on", args.start_timeout_s)
        server.served()
        say(f"{label}: SERVING after {serving_s:.1f} s, every worker after {all_workers_s:.1f} s")
        first_ms, items = rank_items(address, 2 * args.workers)
        pss = 0
        for _ in range(3):  # the highest of three samples over a second
            pss = max(pss, server.pss())
            time.sleep(PSS_SAMPLE_S / 2)
        stop_s = server.terminate()
        imports = server.line_s("replaying the catalogue")
        replayed = server.line_s("catalogue:")
        return Start(
            serving_s=round(serving_s, 2),
            all_workers_s=round(all_workers_s, 2),
            imports_s=None if imports is None else round(imports, 2),
            replay_s=between(imports, replayed),
            build_s=between(replayed, server.first_child_s),
            workers_s=between(server.first_child_s, serving_s),
            first_rank_ms=round(first_ms, 1),
            rank_items=items,
            peak_pss_gb=round(server.peak_pss / GB, 3),
            pss_gb=round(pss / GB, 3),
            stop_s=round(stop_s, 2),
        )


# The run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    posts: int
    users: int
    workers: int
    cores: int
    producer_posts_per_s: float
    replay_only_s: float  # the baseline
    replay_only_posts_per_s: float
    first_start_s: float
    restart_s: float  # spawn -> SERVING, the second start over the same topics
    pss_gb: float  # after the restart serves
    peak_pss_gb: float  # the higher of the two start-ups' peaks
    rank_items: int
    first_start: Start
    restart: Start
    restart_with_version_s: float | None  # with a plan naming a version (--with-version)
    restart_with_version: Start | None
    wall_s: float

    def ratios(self) -> dict[str, float]:
        return {"restart_vs_replay_only": round(self.restart_s / self.replay_only_s, 3)}

    def targets(self) -> dict[str, bool]:
        met = {
            "restart_target_met": self.restart_s <= RESTART_TARGET_S,
            "pss_target_met": self.pss_gb <= PSS_TARGET_GB,
        }
        if self.restart_with_version is not None:
            met["restart_with_version_target_met"] = (
                self.restart_with_version.serving_s <= RESTART_TARGET_S
            )
            met["pss_with_version_target_met"] = self.restart_with_version.pss_gb <= PSS_TARGET_GB
        return met


def serve_command(workers: int, port: int, metrics_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "feedrank.cli.main",
        "serve",
        "--workers",
        str(workers),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--no-log-decisions",
    ]


def serve_env(address: str, names: dict[str, str], state_dir: Path) -> dict[str, str]:
    """This environment without FEEDRANK_* settings, pointed at the benchmark's topics."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env.update(
        FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=address,
        FEEDRANK_TOPICS__POSTS=names["posts"],
        FEEDRANK_TOPICS__USERS=names["users"],
        FEEDRANK_TOPICS__GRAPH=names["graph"],
        FEEDRANK_TOPICS__DLQ=names["dlq"],
        FEEDRANK_PATHS__STATE_DIR=str(state_dir),
        FEEDRANK_EXPLORE__FEATURE_UPDATES="false",
        PYTHONUNBUFFERED="1",  # its lines arrive when printed: the phases are timed by them
        PYTHONIOENCODING="utf-8",
        COLUMNS="200",  # rich wraps at 80 columns in a pipe
        NO_COLOR="1",
    )
    return env


def run(address: str, work: Path, args: argparse.Namespace) -> Report:
    """One run on the broker at ``address`` over fresh topics."""
    wall = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    names = {kind: f"bench.restart.{kind}.{tag}" for kind in ("posts", "users", "graph", "dlq")}
    topics = TopicSettings.model_validate({**names, "partitions": args.partitions})
    admin = AdminClient({"bootstrap.servers": address})
    ensure_topics(admin, [*entity_topics(topics), TopicSpec(names["dlq"], 1, 1, 3_600_000)])
    settings = load_settings(
        kafka={"bootstrap_servers": address},
        topics={**names, "partitions": args.partitions},
        explore={"feature_updates": False},
    )
    users = max(args.posts // POSTS_PER_USER, 10)
    app_topics = TopicNames(posts=names["posts"], users=names["users"], graph=names["graph"])
    try:
        say(f"publishing {users:,} users and {args.posts:,} posts")
        with EventProducer(address, topics=app_topics) as producer:
            producer_rate = publish_catalogue(producer, args.posts, users, args.seed)
        say(f"producer: {producer_rate:,.0f} posts/s")
        replay_s = replay_only_s(settings, args.posts)
        say(f"replay only (in process; consume, decode, apply): {replay_s:.1f} s")
        command = serve_command(args.workers, free_port(), free_port())
        env = serve_env(address, names, work / "state")
        grpc_address = f"127.0.0.1:{command[command.index('--port') + 1]}"
        first = start_once(command, env, grpc_address, args, "first start")
        restart = start_once(command, env, grpc_address, args, "restart")
        with_version = None
        if args.with_version:
            say("publishing a registry version of every post (post tower, ANN index)")
            started = time.perf_counter()
            version = publish_catalogue_version(settings, work / "registry")
            say(f"published {version} in {time.perf_counter() - started:.1f} s")
            write_plan(work / "plan.json", version)
            env = {
                **env,
                "FEEDRANK_PATHS__REGISTRY_DIR": str(work / "registry"),
                "FEEDRANK_EXPLORE__PLAN_FILE": str(work / "plan.json"),
                # The version is untrained: its crowded embeddings fail the ANN recall
                # check (0.42 at 1M) and would be refused. The check still runs and
                # costs what it costs; it just does not refuse here.
                "FEEDRANK_EXPLORE__RECALL_THRESHOLD": "0",
            }
            with_version = start_once(command, env, grpc_address, args, "restart with a version")
    finally:
        if args.bootstrap is not None:  # someone else's broker: leave no topics behind
            for future in admin.delete_topics(list(names.values()), operation_timeout=30).values():
                future.result()
    return Report(
        posts=args.posts,
        users=users,
        workers=args.workers,
        cores=os.cpu_count() or 1,
        producer_posts_per_s=round(producer_rate, 1),
        replay_only_s=round(replay_s, 2),
        replay_only_posts_per_s=round(args.posts / replay_s, 1),
        first_start_s=first.serving_s,
        restart_s=restart.serving_s,
        pss_gb=restart.pss_gb,
        peak_pss_gb=max(first.peak_pss_gb, restart.peak_pss_gb),
        rank_items=min(first.rank_items, restart.rank_items),
        first_start=first,
        restart=restart,
        restart_with_version_s=None if with_version is None else with_version.serving_s,
        restart_with_version=with_version,
        wall_s=round(time.perf_counter() - wall, 1),
    )


def print_report(report: Report, as_json: bool) -> None:
    ratios, targets = report.ratios(), report.targets()
    if as_json:
        print(json.dumps({**asdict(report), **ratios, **targets}, indent=2))
        return

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(
        f"{report.posts:,} posts, {report.users:,} users, {report.workers} workers, "
        f"{report.cores} cores; producer {report.producer_posts_per_s:,.0f} posts/s"
    )
    print(
        f"replay only (baseline, in process): {report.replay_only_s:.1f} s "
        f"({report.replay_only_posts_per_s:,.0f} posts/s)"
    )
    print(f"{'seconds':28}{'first start':>12}{'restart':>12}")
    first, restart = report.first_start, report.restart
    rows: list[tuple[str, float | None, float | None]] = [
        ("imports", first.imports_s, restart.imports_s),
        ("replay", first.replay_s, restart.replay_s),
        ("embed + index", first.build_s, restart.build_s),
        ("workers to SERVING", first.workers_s, restart.workers_s),
        ("spawn -> SERVING", first.serving_s, restart.serving_s),
        ("spawn -> every worker up", first.all_workers_s, restart.all_workers_s),
        ("SIGTERM -> exited", first.stop_s, restart.stop_s),
    ]
    for label, one, two in rows:
        print(f"{label:28}{seconds(one):>12}{seconds(two):>12}")
    print(
        f"restart {report.restart_s:.1f} s = {ratios['restart_vs_replay_only']:.2f} x replay only;"
        f" <= {RESTART_TARGET_S:g} s: {verdict(targets['restart_target_met'])}"
    )
    print(
        f"PSS of all serving processes: {report.pss_gb:.2f} GB serving, peak "
        f"{report.peak_pss_gb:.2f} GB during start-up; <= {PSS_TARGET_GB:g} GB: "
        f"{verdict(targets['pss_target_met'])}"
    )
    if (versioned := report.restart_with_version) is not None:
        print(
            f"restart with a plan naming a version: {versioned.serving_s:.1f} s to SERVING "
            f"(replay {seconds(versioned.replay_s)}, load {seconds(versioned.build_s)}); "
            f"PSS {versioned.pss_gb:.2f} GB; <= {RESTART_TARGET_S:g} s: "
            f"{verdict(targets['restart_with_version_target_met'])}"
        )
    print(
        f"Rank for {RANK_USER}: >= {report.rank_items} items "
        f"(first call {restart.first_rank_ms:.0f} ms after the restart)"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Progress goes to stderr, the report to stdout.",
    )
    parser.add_argument("--posts", type=int, default=1_000_000, help="catalogue posts (1M)")
    parser.add_argument("--workers", type=int, default=2, help="serve worker processes (2)")
    parser.add_argument("--partitions", type=int, default=3, help="per entity topic (3)")
    parser.add_argument(
        "--start-timeout-s", type=float, default=900.0, help="per start, to SERVING (900)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--smoke", action="store_true", help="CI-sized: 3k posts, 1 worker")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--with-version",
        action="store_true",
        help="also restart with a serving plan naming a published version of every post",
    )
    args = parser.parse_args()
    if args.smoke:
        args.posts, args.workers = 3_000, 1
    if args.posts < 1 or args.workers < 1:
        parser.error("--posts and --workers must be at least 1")
    return args


def main() -> None:
    args = parse_arguments()
    with (
        tempfile.TemporaryDirectory(prefix="bench-serve-restart-") as temporary,
        broker(args.bootstrap, Path(temporary)) as address,
    ):
        report = run(address, Path(temporary), args)
    print_report(report, args.json)


if __name__ == "__main__":
    main()
