from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from feedrank.stack.process import ManagedProcess

TAG = "feedrank-test-sleeper"


def sleeper(tmp_path: Path, *, tie_to_parent: bool) -> ManagedProcess:
    # The tag stays in the command line for the process's whole life (no exec).
    command = [sys.executable, "-c", "import time; time.sleep(300)", TAG]
    return ManagedProcess.launch(
        command, log_file=tmp_path / "sleeper.log", tie_to_parent=tie_to_parent, tag=TAG
    )


def wait_until(condition: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_stop_terminates_the_process(tmp_path: Path) -> None:
    process = sleeper(tmp_path, tie_to_parent=True)
    assert process.is_running()
    process.stop(grace_s=5)
    assert not process.is_running()


def test_pid_file_finds_a_detached_process_again(tmp_path: Path) -> None:
    process = sleeper(tmp_path, tie_to_parent=False)
    pid_file = tmp_path / "sleeper.pid"
    process.save(pid_file)
    # Until the child has exec'd, its command line is still the parent's (no tag).
    assert wait_until(lambda: ManagedProcess.load(pid_file) is not None)
    found = ManagedProcess.load(pid_file)
    assert found is not None
    assert found.pid == process.pid
    found.stop(grace_s=5)
    assert ManagedProcess.load(pid_file) is None
    process.stop()


def test_pid_file_ignores_a_process_without_our_tag(tmp_path: Path) -> None:
    pid_file = tmp_path / "other.pid"
    pid_file.write_text(
        f'{{"pid": {os.getpid()}, "tag": "{TAG}", "log_file": "x", "started_ms": 0}}'
    )
    assert ManagedProcess.load(pid_file) is None


def test_tied_child_dies_with_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent_script = (
        "import sys; from pathlib import Path\n"
        "from feedrank.stack.process import ManagedProcess\n"
        f"p = ManagedProcess.launch([sys.executable, '-c', 'import time; time.sleep(300)',"
        f" '{TAG}'],"
        f" log_file=Path('{tmp_path}/c.log'), tie_to_parent=True, tag='{TAG}')\n"
        f"p.save(Path('{pid_file}'))\n"
        # Exit only once the child runs with its tag, so its death proves the tie.
        f"while ManagedProcess.load(Path('{pid_file}')) is None: pass\n"
    )
    subprocess.run([sys.executable, "-c", parent_script], check=True, timeout=30)
    assert pid_file.is_file()
    child_pid = json.loads(pid_file.read_text())["pid"]
    assert child_pid != os.getpid()
    assert wait_until(lambda: ManagedProcess.load(pid_file) is None), "child outlived its parent"
