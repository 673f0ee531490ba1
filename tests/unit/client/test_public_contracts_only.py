"""feedrank.client is for outside apps: it speaks only the public contracts and the core."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "feedrank.simulate",
    "feedrank.stack",
    "feedrank.explore",
    "feedrank.learners",
    "feedrank.deploy",
    "feedrank.streaming",
    "feedrank.cli",
)

SPLIT = [room.split(".") for room in FORBIDDEN]


def test_importing_the_client_loads_no_room_above_the_core() -> None:
    probe = "import json, sys, feedrank.client\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert [name for name in loaded if name.split(".")[:2] in SPLIT] == []
