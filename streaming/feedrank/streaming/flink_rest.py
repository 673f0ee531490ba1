"""The few calls of a Flink JobManager's REST API that running the join needs.

Cluster overview, jobs and their states, checkpoints, where a job's tasks run, and a
stop with a savepoint, over plain HTTP (``urllib``) and without PyFlink. Used by the
join's supervisor (:mod:`feedrank.streaming.cluster_join`), the local stack's probes
and the tests; see https://nightlies.apache.org/flink/flink-docs-stable/docs/ops/rest_api/.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

SAVEPOINT_POLL_S = 0.5


class FlinkRestError(RuntimeError):
    """The JobManager's REST API did not answer, or refused a request."""


@dataclass(frozen=True)
class ClusterOverview:
    taskmanagers: int
    slots_total: int
    slots_available: int
    jobs_running: int


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    name: str
    state: str  # Flink's JobStatus: CREATED, RUNNING, RESTARTING, FAILED, CANCELED, ...
    start_time_ms: int


@dataclass(frozen=True)
class CheckpointInfo:
    """A job's newest completed checkpoint, and what it was restored from (if anything)."""

    last_id: int  # 0: none completed yet
    last_completed_ms: int | None
    restored_from: str | None  # the external path of the snapshot the job started from


class FlinkRestClient:
    """Calls to one JobManager at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def overview(self) -> ClusterOverview:
        body = self._call("GET", "/overview")
        return ClusterOverview(
            taskmanagers=int(body["taskmanagers"]),
            slots_total=int(body["slots-total"]),
            slots_available=int(body["slots-available"]),
            jobs_running=int(body["jobs-running"]),
        )

    def jobs(self) -> list[JobSummary]:
        """Every job the JobManager knows (running and recently ended), newest first."""
        body = self._call("GET", "/jobs/overview")
        found = [
            JobSummary(job["jid"], job["name"], job["state"], int(job["start-time"]))
            for job in body["jobs"]
        ]
        return sorted(found, key=lambda job: job.start_time_ms, reverse=True)

    def job_state(self, job_id: str) -> str | None:
        """The job's state, or None when the JobManager does not know the job.

        From the list: asking for an unknown job by id logs an error on the JobManager."""
        return next((job.state for job in self.jobs() if job.job_id == job_id), None)

    def checkpoints(self, job_id: str) -> CheckpointInfo:
        body = self._call("GET", f"/jobs/{job_id}/checkpoints")
        latest = body.get("latest") or {}
        completed = latest.get("completed") or {}
        restored = latest.get("restored") or {}
        return CheckpointInfo(
            last_id=int(completed.get("id", 0)),
            last_completed_ms=completed.get("latest_ack_timestamp"),
            restored_from=restored.get("external_path"),
        )

    def failures(self, job_id: str, limit: int = 3) -> list[str]:
        """The job's newest failures, newest first: each its exception's first line, and
        the task and TaskManager it struck (from the JobManager's exception history)."""
        body = self._call("GET", f"/jobs/{job_id}/exceptions?maxExceptions={limit}")
        found = []
        for entry in (body.get("exceptionHistory") or {}).get("entries", [])[:limit]:
            trace = str(entry.get("stacktrace") or entry.get("exceptionName") or "")
            where = entry.get("taskName") or "the job"
            if entry.get("taskManagerId"):
                where += f" on {entry['taskManagerId']}"
            found.append(f"{trace.splitlines()[0] if trace else 'unknown'} (in {where})")
        return found

    def job_taskmanagers(self, job_id: str) -> set[str]:
        """Resource ids of the TaskManagers that run the job's tasks."""
        body = self._call("GET", f"/jobs/{job_id}")
        found: set[str] = set()
        for vertex in body["vertices"]:
            placed = self._call("GET", f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
            found.update(entry["taskmanager-id"] for entry in placed["taskmanagers"])
        return found

    def taskmanager_slots(self, resource_id: str) -> tuple[int, int] | None:
        """(slots, free slots) of a registered TaskManager; None when it is not registered.

        From the list: asking for an unknown one by id logs an error on the JobManager."""
        for taskmanager in self._call("GET", "/taskmanagers")["taskmanagers"]:
            if taskmanager["id"] == resource_id:
                return int(taskmanager["slotsNumber"]), int(taskmanager["freeSlots"])
        return None

    def stop_with_savepoint(self, job_id: str, directory: str, *, timeout_s: float) -> str:
        """Take a savepoint into ``directory`` (a URI), then stop the job; its location."""
        trigger = self._call(
            "POST",
            f"/jobs/{job_id}/stop",
            {"targetDirectory": directory, "drain": False, "formatType": "CANONICAL"},
        )
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self._call("GET", f"/jobs/{job_id}/savepoints/{request_id}")
            if body["status"]["id"] == "COMPLETED":
                operation = body.get("operation") or {}
                if "location" in operation:
                    return str(operation["location"])
                cause = (operation.get("failure-cause") or {}).get("stack-trace", "")
                raise FlinkRestError(f"savepoint of job {job_id} failed: {cause[:2000]}")
            time.sleep(SAVEPOINT_POLL_S)
        raise FlinkRestError(f"savepoint of job {job_id} not done after {timeout_s:.0f}s")

    def cancel(self, job_id: str) -> None:
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - the JobManager's http URL
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise FlinkRestError(f"{method} {path}: HTTP {error.code}: {detail}") from error
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise FlinkRestError(f"no Flink JobManager at {self.base_url}: {error}") from error
        return json.loads(text) if text else {}
