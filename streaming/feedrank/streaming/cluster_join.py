"""The join as a job on a Flink session cluster, kept running (``feedrank join --jobmanager``).

:func:`run_cluster_join` submits ``join_main.py`` with ``flink run --detached`` (restored
from the newest retained checkpoint or savepoint with ``--fromSavepoint``), or adopts the
``feedrank-join`` job the cluster already runs: a restarted supervisor must not start a
second one, both would write under the same transactional ids. It then watches the job
through the JobManager's REST API. A lost TaskManager is the cluster's business (its
restart strategy restores the job from its latest checkpoint). A job that is gone (a
JobManager without HA that died and came back forgets its jobs) or ended by itself is
resubmitted from the newest retained snapshot; the sinks' transactional-id prefixes are
stable, so the new job aborts what the lost one left open and commits nothing twice. A
stop (SIGTERM) stops the job with a savepoint.

This process must see the job's checkpoint directory (``paths.flink_checkpoint_dir``, the
one ``join_main.py`` points the job at) to find the newest snapshot. Importing this
module does not import PyFlink: the job graph is built by ``flink run``'s Python process.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from feedrank.core.backoff import Backoff
from feedrank.core.process_lifetime import die_with_parent
from feedrank.core.settings import Settings, settings_to_environment
from feedrank.streaming.flink_rest import FlinkRestClient, FlinkRestError
from feedrank.streaming.join_status import JOB_NAME, TERMINAL, JoinRun, JoinStatus
from feedrank.streaming.pyflink_distribution import flink_script
from feedrank.streaming.recovery import newest_snapshot

log = logging.getLogger(__name__)

JOIN_MAIN = Path(__file__).with_name("join_main.py")
SUBMITTED = re.compile(r"JobID ([0-9a-f]{32})")
UNREACHABLE = "UNREACHABLE"  # the JobManager does not answer
MISSING = "MISSING"  # the JobManager does not know the job
POLL_INTERVAL_S = 2.0
SUBMIT_TIMEOUT_S = 300.0  # `flink run` starts a JVM and a Python process, builds the job
STOP_TIMEOUT_S = 120.0
JOBMANAGER_WAIT_S = 120.0
OUTPUT_TAIL_LINES = 40
# `flink run` is a short-lived client JVM (start, plan, submit, exit): C2's compilations and
# the default collector's threads cost it more than they return. C1 only and the serial GC halved
# a submission's CPU (47 to 23 s, three each, 2 cores: docs/operations.md, "Tests"). Only
# the client's: the JobManager's and TaskManagers' own options stay as they are.
CLIENT_JVM_ARGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class ClusterJoinError(RuntimeError):
    """The join could not be submitted to the session cluster, or the cluster not reached."""


def jobmanager_address(settings: Settings, requested: str | None) -> str | None:
    """``HOST:PORT`` of the REST API of the session cluster that runs the join, or None
    for the embedded mini-cluster: ``requested`` (``--jobmanager``) if given, else, in
    the cluster topology, the local stack's JobManager."""
    if requested:
        return requested
    if settings.cluster.topology == "cluster":
        return f"127.0.0.1:{settings.cluster.flink_rest_port}"
    return None


def submit_command(address: str, snapshot: Path | None) -> list[str]:
    """``flink run`` of ``join_main.py``, detached, with this venv's Python for the
    job's Python client and its Python workers."""
    command = [
        str(flink_script("flink")),
        "run",
        "--detached",
        "--jobmanager",
        address,
        "--pyExecutable",
        sys.executable,
        "--pyClientExecutable",
        sys.executable,
    ]
    if snapshot is not None:
        command += ["--fromSavepoint", snapshot.as_uri()]
    return [*command, "--python", str(JOIN_MAIN)]


def submit_join(settings: Settings, address: str, snapshot: Path | None) -> str:
    """Submit the join (``join_main.py`` reads ``settings`` from its environment); its job id."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
    environment.update(settings_to_environment(settings))
    environment.setdefault("JVM_ARGS", CLIENT_JVM_ARGS)  # flink's scripts read it
    command = submit_command(address, snapshot)
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=SUBMIT_TIMEOUT_S,
            check=False,
            # A supervisor killed mid-submission must not leave a `flink run` behind that
            # submits a second job next to the one its restarted self submits.
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired as error:
        raise ClusterJoinError(f"`flink run` did not return in {SUBMIT_TIMEOUT_S:.0f}s") from error
    output = completed.stdout + completed.stderr
    submitted = SUBMITTED.search(output)
    if completed.returncode != 0 or submitted is None:
        tail = "\n".join(output.strip().splitlines()[-OUTPUT_TAIL_LINES:])
        raise ClusterJoinError(f"`flink run` failed (exit {completed.returncode}):\n{tail}")
    return submitted.group(1)


def snapshot_path(location: str) -> Path:
    """A snapshot's path from the location Flink reports (``file:/…/chk-7`` or a URI)."""
    parsed = urlparse(location)
    return Path(parsed.path) if parsed.scheme in ("", "file") else Path(location)


class SessionClusterJoin:
    """The join's job on the session cluster at ``address``: start, status, resubmit, stop."""

    def __init__(
        self,
        settings: Settings,
        address: str,
        *,
        say: Callable[[str], None] = log.info,
        warn: Callable[[str], None] = log.warning,
    ) -> None:
        self.settings = settings
        self.address = address
        self.rest = FlinkRestClient(f"http://{address}")
        self.say, self.warn = say, warn
        self.job_id: str | None = None
        self.restored_from: Path | None = None
        # With --fresh: a resubmission restores only snapshots taken since (else empty state).
        self.fresh_since: float | None = None

    def wait_for_jobmanager(self, stop: threading.Event, timeout_s: float) -> bool:
        """Until the REST API answers (True), ``stop`` is set (False), or a clear error."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.rest.overview()
            except FlinkRestError as error:
                if time.monotonic() >= deadline:
                    raise ClusterJoinError(
                        f"{error}; start the Flink session cluster first "
                        "(`feedrank up --topology cluster`) or pass its REST address"
                    ) from error
                if stop.wait(1.0):
                    return False
            else:
                return True

    def start(self, *, restore: bool) -> None:
        """Adopt the cluster's running join, or submit one (restored, unless not ``restore``)."""
        if self.adopt():
            return
        if not restore:
            self.fresh_since = time.time()
        self.submit(newest_snapshot(self.settings) if restore else None)

    def resubmit(self) -> bool:
        """Adopt or submit anew from the newest snapshot; True when it was submitted."""
        if self.adopt():
            return False
        self.submit(newest_snapshot(self.settings, newer_than=self.fresh_since))
        return True

    def adopt(self) -> bool:
        for job in self.rest.jobs():
            if job.name == JOB_NAME and job.state not in TERMINAL:
                self.job_id, self.restored_from = job.job_id, None
                self.say(f"the join already runs on {self.address}: job {job.job_id}")
                return True
        return False

    def submit(self, snapshot: Path | None) -> None:
        origin = f"restored from {snapshot}" if snapshot is not None else "with empty state"
        self.say(f"submitting the join to {self.address}, {origin}")
        self.job_id = submit_join(self.settings, self.address, snapshot)
        self.restored_from = snapshot
        self.say(f"submitted: job {self.job_id}")

    def failure_cause(self) -> str | None:
        """Why the job failed last, as the JobManager tells it; None when it cannot."""
        try:
            failures = self.rest.failures(self.job_id, limit=1) if self.job_id else []
        except FlinkRestError:
            return None
        return failures[0] if failures else None

    def status(self) -> JoinStatus:
        job_id = self.job_id or "-"
        try:
            state = self.rest.job_state(job_id) if self.job_id else None
            if state is None:
                return JoinStatus(job_id, MISSING, self.restored_from, 0, None)
            checkpoints = self.rest.checkpoints(job_id)
        except FlinkRestError:
            return JoinStatus(job_id, UNREACHABLE, self.restored_from, 0, None)
        restored = self.restored_from
        if checkpoints.restored_from:  # also known for an adopted job
            restored = snapshot_path(checkpoints.restored_from)
        completed_ms = checkpoints.last_completed_ms
        age = None if completed_ms is None else max(0.0, time.time() - completed_ms / 1000)
        return JoinStatus(job_id, state, restored, checkpoints.last_id, age)

    def stop(self, last_state: str) -> JoinRun:
        """Stop the job with a savepoint into ``paths.flink_savepoint_dir``; cancel it
        when no savepoint can be taken."""
        if self.job_id is None or last_state in (MISSING, UNREACHABLE, *TERMINAL):
            return JoinRun(self.restored_from, last_state, None)
        directory = self.settings.paths.flink_savepoint_dir.resolve().as_uri()
        try:
            savepoint = self.rest.stop_with_savepoint(
                self.job_id, directory, timeout_s=STOP_TIMEOUT_S
            )
        except FlinkRestError as error:
            self.warn(f"no savepoint ({error}); cancelling job {self.job_id}")
            try:
                self.rest.cancel(self.job_id)
            except FlinkRestError as cancel_error:
                self.warn(f"could not cancel job {self.job_id}: {cancel_error}")
                return JoinRun(self.restored_from, last_state, None)
            return JoinRun(self.restored_from, "CANCELED", None)
        return JoinRun(self.restored_from, "STOPPED_WITH_SAVEPOINT", savepoint)


def run_cluster_join(
    settings: Settings,
    address: str,
    stop: threading.Event,
    *,
    on_status: Callable[[JoinStatus], None] | None = None,
    on_resubmit: Callable[[], None] | None = None,
    restore: bool = True,
    poll_interval_s: float = POLL_INTERVAL_S,
    say: Callable[[str], None] = log.info,
    warn: Callable[[str], None] = log.warning,
) -> JoinRun:
    """Keep the join running on the session cluster at ``address`` until ``stop`` is set,
    then stop it with a savepoint. ``on_resubmit`` hears every resubmission."""
    join = SessionClusterJoin(settings, address, say=say, warn=warn)
    if not join.wait_for_jobmanager(stop, JOBMANAGER_WAIT_S):
        return JoinRun(None, UNREACHABLE, None)
    join.start(restore=restore)
    # Between resubmissions: 2 s, then up to a minute while the job does not run.
    backoff, next_try, state = Backoff(initial_s=2.0, max_s=60.0), 0.0, "CREATED"
    while not stop.wait(poll_interval_s):
        status = join.status()
        state = status.state
        if on_status is not None:
            on_status(status)
        if state == "RUNNING":
            backoff.reset()
        elif (state == MISSING or state in TERMINAL) and time.monotonic() >= next_try:
            cause = join.failure_cause() if state == "FAILED" else None
            because = f" ({cause})" if cause else ""
            warn(f"the join's job {status.job_id} is {state}{because}: resubmitting it")
            try:
                submitted = join.resubmit()
            except (ClusterJoinError, FlinkRestError) as error:
                warn(f"resubmitting the join failed: {error}")
                submitted = False
            next_try = time.monotonic() + backoff.next_delay()
            if submitted and on_resubmit is not None:
                on_resubmit()
    return join.stop(state)
