"""The explore replicas' balancer: HAProxy in front of them, as a component of the stack.

HAProxy speaks HTTP/2 on both sides (``proto h2``), so it balances each Rank call (an
HTTP/2 stream), not each client connection: a client's one long-lived gRPC channel is
spread over every replica. Its configuration is rendered from the settings into
``<state_dir>/haproxy/haproxy.cfg``, checked with ``haproxy -c``, and HAProxy runs in
the foreground (``-db``) as the component's process, logging to ``<log_dir>/balancer.log``.

* Health: every replica is asked ``grpc.health.v1.Health/Check`` for
  ``feedrank.v1.Ranking`` every second (raw HTTP/2 over ``tcp-check``: see
  ``grpc_health_frames`` for why); two failures mark it DOWN, two passes UP again. A
  connection error on real traffic marks it DOWN at once (``observe layer4``).
* Retries: a call whose replica refused the connection, closed it without answering
  or answered garbage is sent again to another replica (``retry-on``, ``redispatch``);
  the frontend buffers each request whole so it can be sent again.
* Stats: ``http://<host>:<cluster.balancer_stats_port>/stats`` (``;csv`` for machines)
  and Prometheus metrics on ``/metrics`` of the same port.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from feedrank.core.settings import LOOPBACK, Settings
from feedrank.stack.components import (
    Health,
    StackError,
    ensure_port_free,
    grpc_service_health,
    wait_until_healthy,
)
from feedrank.stack.grpc_health_frames import (
    call_end_marker,
    health_check_request,
    serving_response_message,
)
from feedrank.stack.process import ManagedProcess

RANKING_SERVICE = "feedrank.v1.Ranking"
BACKEND = "explore"
CHECK_INTERVAL_MS = 1000  # between two checks of an UP or DOWN replica
FAST_CHECK_INTERVAL_MS = 250  # while a replica is changing state
CHECK_FALL, CHECK_RISE = 2, 2  # failed checks to DOWN, passed checks back to UP
RETRIES = 3  # sends of one call after its first, each to another replica
HTTP_HEADERS_ROOM = 4096  # bytes kept for headers next to the largest Rank message
RESOLVERS = "dns"  # the resolvers section of a configuration whose replicas have hostnames


@dataclass(frozen=True)
class ReplicaAddress:
    """Where the balancer finds one replica's Rank service."""

    name: str
    port: int
    host: str = LOOPBACK


def haproxy_executable() -> str:
    """The ``haproxy`` binary (Debian puts it in /usr/sbin, off many users' PATH)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin")
    if found is None:
        raise StackError(
            "HAProxy is not installed: run 'make tools' (apt-get install haproxy); "
            "the cluster topology's explore replicas sit behind it"
        )
    return found


def render_config(
    settings: Settings, replicas: list[ReplicaAddress], *, resolver: str | None = None
) -> str:
    """HAProxy's configuration: the Rank frontend, the replicas' backend, the stats.

    With ``resolver`` (``host:port`` of a DNS server, e.g. Docker's ``127.0.0.11:53``)
    the replicas' hosts are names that may not resolve yet, or move when a replica is
    recreated: HAProxy starts anyway (``init-addr last,libc,none``; a replica without
    an address stays out of the rotation) and asks the resolver again while it runs.
    """
    if not replicas:
        raise StackError("the balancer needs at least one replica (cluster.explore_replicas)")
    host = settings.ports.bind_host
    # Every Rank request the replicas accept fits a buffer whole, so any can be retried.
    buffer_bytes = max(16_384, settings.explore.max_message_bytes + HTTP_HEADERS_ROOM)
    check_request = health_check_request(RANKING_SERVICE).hex()
    call_end, serving = call_end_marker().hex(), serving_response_message().hex()
    servers = "\n".join(
        f"    server {replica.name} {replica.host}:{replica.port}" for replica in replicas
    )
    resolution, resolvers = "", ""
    if resolver is not None:
        resolution = f" init-addr last,libc,none resolvers {RESOLVERS} resolve-prefer ipv4"
        resolvers = f"resolvers {RESOLVERS}\n    nameserver {RESOLVERS} {resolver}\n\n"
    return f"""\
# Rendered by feedrank (feedrank/stack/balancer.py): edits are lost.
global
    log stdout format raw local0 info
    tune.bufsize {buffer_bytes}

defaults
    mode http
    log global
    option dontlog-normal
    option log-health-checks
    timeout connect 500ms
    timeout client 5m
    timeout http-keep-alive 5m
    timeout http-request 10s
    timeout server 30s
    timeout check 2s

frontend ranking
    bind {host}:{settings.ports.ranking_grpc} proto h2
    option httplog
    option http-buffer-request
    default_backend {BACKEND}

{resolvers}backend {BACKEND}
    balance roundrobin
    retries {RETRIES}
    retry-on conn-failure empty-response junk-response
    option redispatch 1
    # grpc.health.v1.Health/Check for {RANKING_SERVICE} over raw HTTP/2 (see
    # feedrank/stack/grpc_health_frames.py): the answer ends, then it must say SERVING.
    option tcp-check
    tcp-check send-binary {check_request}
    tcp-check expect comment "the Check call ends" binary {call_end}
    tcp-check expect comment "{RANKING_SERVICE} is SERVING" min-recv 1 binary {serving}
    default-server proto h2 check inter {CHECK_INTERVAL_MS}ms \
fastinter {FAST_CHECK_INTERVAL_MS}ms downinter {CHECK_INTERVAL_MS}ms \
fall {CHECK_FALL} rise {CHECK_RISE} observe layer4 error-limit 1 on-error mark-down{resolution}
{servers}

frontend stats
    bind {host}:{settings.cluster.balancer_stats_port}
    no log
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s
"""


class BalancerComponent:
    """HAProxy in front of the explore replicas, on ``ports.ranking_grpc``."""

    name = "balancer"
    ready_timeout_s = 60.0
    poll_s = 0.25

    def __init__(self, settings: Settings, replicas: list[ReplicaAddress]) -> None:
        self.settings = settings
        self.replicas = replicas

    @property
    def tag(self) -> str:
        # -L names HAProxy's local peer; with no peers section it only marks the process.
        return f"feedrank.component={self.name}"

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.settings.ports.ranking_grpc}"

    @property
    def stats_url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.cluster.balancer_stats_port}/stats"

    @property
    def config_file(self) -> Path:
        return self.settings.paths.state_dir / "haproxy" / "haproxy.cfg"

    @property
    def log_file(self) -> Path:
        return self.settings.paths.log_dir / f"{self.name}.log"

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        ensure_port_free(self.settings.ports.ranking_grpc, owner="the balancer's Rank frontend")
        ensure_port_free(self.settings.cluster.balancer_stats_port, owner="the balancer's stats")
        executable = haproxy_executable()
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_config(self.settings, self.replicas))
        self._check_config(executable)
        return ManagedProcess.launch(
            [executable, "-db", "-f", str(self.config_file), "-L", self.tag],
            log_file=self.log_file,
            tie_to_parent=tie_to_parent,
            tag=self.tag,
        )

    def wait_ready(self, process: ManagedProcess) -> None:
        wait_until_healthy(
            self,
            process,
            log_file=self.log_file,
            timeout_s=self.ready_timeout_s,
            poll_s=self.poll_s,
        )

    def probe(self) -> Health:
        """Healthy when Rank's health answers SERVING through the balancer and the stats
        page counts at least one replica UP."""
        try:
            states = self.replica_states()
        except OSError as error:
            return Health("unhealthy", f"no stats at {self.stats_url}: {error}")
        through = grpc_service_health(self.endpoint, RANKING_SERVICE)
        up = sorted(name for name, state in states.items() if state.startswith("UP"))
        down = sorted(set(states) - set(up))
        detail = f"{len(up)}/{len(states)} replicas UP" + (
            f" ({', '.join(down)} not)" if down else ""
        )
        if through.state != "healthy" or not up:
            return Health("unhealthy", f"{through.detail} through the balancer; {detail}")
        return Health("healthy", f"{detail}; stats {self.stats_url}")

    def replica_states(self) -> dict[str, str]:
        """Each replica's state as HAProxy sees it: UP, DOWN, "UP 1/2" (going down)…"""
        with urllib.request.urlopen(f"{self.stats_url};csv", timeout=2) as reply:  # noqa: S310
            text = reply.read().decode()
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def _check_config(self, executable: str) -> None:
        result = subprocess.run(
            [executable, "-c", "-q", "-f", str(self.config_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"HAProxy refused {self.config_file}:\n{result.stdout}{result.stderr}")
