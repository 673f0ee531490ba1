"""The canary's error rate and p99 latency, read from Prometheus's HTTP API.

Explore workers count Rank calls in ``feedrank_rank_requests_total{code, arm}`` and time
them in ``feedrank_rank_latency_seconds{arm}``; Prometheus scrapes them (see
``deploy/prometheus/prometheus.yml``). Any failure to read gives ``None``: the SLOs are
then not judged at that look, and the engagement analysis goes on.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
import urllib.request
from typing import Protocol

from feedrank.core.arms import CANARY_ARM
from feedrank.deploy.analysis import ServiceLevels

log = logging.getLogger(__name__)

REQUESTS_QUERY = 'sum(increase(feedrank_rank_requests_total{{arm="{arm}"}}[{window}]))'
ERRORS_QUERY = 'sum(increase(feedrank_rank_requests_total{{arm="{arm}",code!="OK"}}[{window}]))'
P99_QUERY = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(feedrank_rank_latency_seconds_bucket{{arm="{arm}"}}[{window}])))'
)


class SloSource(Protocol):
    def canary_levels(self) -> ServiceLevels | None: ...


class PrometheusSlo:
    def __init__(
        self, base_url: str, *, arm: str = CANARY_ARM, window: str = "5m", timeout_s: float = 3.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.arm = arm
        self.window = window
        self.timeout_s = timeout_s

    def canary_levels(self) -> ServiceLevels | None:
        try:
            requests = self._scalar(REQUESTS_QUERY)
            errors = self._scalar(ERRORS_QUERY)
            p99 = self._scalar(P99_QUERY)
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("SLOs not judged: Prometheus at %s: %s", self.base_url, error)
            return None
        if requests is None:
            return None
        return ServiceLevels(
            requests=round(requests),
            errors=round(errors or 0.0),
            latency_p99_s=p99 if p99 is not None and math.isfinite(p99) else 0.0,
        )

    def _scalar(self, template: str) -> float | None:
        query = template.format(arm=self.arm, window=self.window)
        url = f"{self.base_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus_url must be http(s), not {self.base_url!r}")
        with urllib.request.urlopen(url, timeout=self.timeout_s) as reply:  # noqa: S310
            document = json.loads(reply.read())
        if document.get("status") != "success":
            raise ValueError(f"query failed: {document.get('error', document)}")
        result = document["data"]["result"]
        if not result:
            return None
        return float(result[0]["value"][1])
