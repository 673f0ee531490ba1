"""The Java engine's byte-level pieces against Python's, case by case.

``ParityHarness.java`` (beside this file, in the engine's package) is compiled against
the engine's jar and asked, a line at a time, for what the engine computes: BLAKE2b
digests (``hashlib.blake2b``), users' position segments (``core.arms``), Python's
``repr`` of floats, label states read and written again (``label_state``: the same
bytes, format 2), a decision's post hashes, and a dead letter's reward JSON
(``codecs.encode_reward_json``). The differential test (test_java_engine.py) compares
the engines' outputs; this one pins what it cannot see, such as the state's bytes.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from feedrank.core import codecs
from feedrank.core.arms import position_segment
from feedrank.stack.jars import JarLocations
from feedrank.streaming.label_state import LabelState, LogPosition, post_hashes
from feedrank.v1 import events_pb2

HARNESS = Path(__file__).with_name("java") / "ParityHarness.java"


@pytest.fixture(scope="module")
def engine(jars: JarLocations, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the compiled harness (run it with the engine's jar)."""
    javac = shutil.which("javac")
    assert javac is not None, "the Java engine needs a JDK"
    classes = tmp_path_factory.mktemp("parity")
    subprocess.run(
        [javac, "-d", str(classes), "-cp", str(jars.join_engine), str(HARNESS)],
        check=True,
        capture_output=True,
    )
    return classes


def ask(engine: Path, jars: JarLocations, requests: list[str]) -> list[str]:
    java = shutil.which("java")
    assert java is not None
    classpath = f"{engine}:{jars.join_engine}"
    completed = subprocess.run(
        [java, "-cp", classpath, "feedrank.streaming.engine.ParityHarness"],
        input="\n".join(requests) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answers = completed.stdout.splitlines()
    assert len(answers) == len(requests), completed.stderr
    return answers


def hex_text(text: str) -> str:
    return text.encode().hex()


def bits(value: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def test_hashes_segments_and_float_text_match_python(engine: Path, jars: JarLocations) -> None:
    rng = random.Random(3)
    data = [rng.randbytes(rng.choice((0, 1, 7, 64, 127, 128, 129, 300))) for _ in range(40)]
    sizes = [rng.choice((1, 8, 32, 64)) for _ in data]
    users = [f"user-{rng.randrange(10**6)}" for _ in range(60)] + ["ü ß", "", "a b"]
    salts = ["feedrank-arms-1", "s", "sält"]
    floats = [0.0, -0.0, 1.0, 0.5, 1e-05, 0.0001, 1.5e16, 1e16, 123456789.0, 0.1 + 0.2]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(40)] + [rng.random() * 1e-7 for _ in range(10)]
    requests = [f"blake2b {d.hex()} {n}" for d, n in zip(data, sizes, strict=True)]
    requests += [f"segment {hex_text(s)} {hex_text(u)}" for s in salts for u in users]
    requests += [f"repr {bits(value)}" for value in floats]
    expected = [
        hashlib.blake2b(d, digest_size=n).hexdigest() for d, n in zip(data, sizes, strict=True)
    ]
    expected += [str(position_segment(s, u)) for s in salts for u in users]
    expected += [repr(value) for value in floats]
    assert ask(engine, jars, requests) == expected


def test_label_states_and_post_hashes_are_the_same_bytes(engine: Path, jars: JarLocations) -> None:
    rng = random.Random(5)
    states, posts = [], []
    for index in range(30):
        ids = [f"p{rng.randrange(50)}" for _ in range(rng.randint(1, 40))]
        posts.append(ids)
        state = LabelState(
            decision_time_ms=1_764_000_000_000 + index,
            has_decision=index % 5 != 0,
            closed=index % 7 == 0,
            position=LogPosition(index % 3, rng.randrange(10**9)) if index % 4 else None,
            inline=rng.randbytes(20) if index % 9 == 0 else None,
            user_id=f"ü{index}",
            model_version=f"v{index}",
            arm="canary",
        )
        state.hash_width, state.hashes = post_hashes(ids)
        state.labelled = rng.getrandbits(len(ids))
        state.breakdowns = {
            i: {"likes": 1.0, "dwell_seconds": rng.uniform(0, 30)} for i in range(0, len(ids), 3)
        }
        state.early = [
            events_pb2.Reward(
                decision_id="d",
                post_id="p1",
                user_id="u",
                type=events_pb2.REWARD_TYPE_LIKE,
                value=1.0,
                ts_ms=5,
            )
        ] * (index % 3)
        states.append(state.to_bytes())
    # Two ids whose CRC-32s collide make the whole decision use 8-byte BLAKE2b hashes.
    posts.append(["plumless", "buckeroo", "p1"])
    requests = [f"state {data.hex()}" for data in states]
    requests += [f"posts {','.join(ids)}" for ids in posts]
    expected = [data.hex() for data in states]
    for ids in posts:
        width, hashes = post_hashes(ids)
        expected.append(f"{width} {hashes.hex()}")
    assert expected[-1].startswith("8 "), "the colliding pair takes the 8-byte path"
    assert ask(engine, jars, requests) == expected


def test_dead_letter_reward_json_matches_python(engine: Path, jars: JarLocations) -> None:
    cases = [
        ("d1", "u1", "like", 1.0),
        ('d"2\\', "ü\n", "dwell", 12.345),
        ("d3", "u", "view", 1e-05),
    ]
    requests = [
        f"json {hex_text(d)} {hex_text(u)} {kind} {bits(value)}" for d, u, kind, value in cases
    ]
    expected = [
        codecs.encode_reward_json(
            events_pb2.Reward(
                decision_id=d,
                post_id="p1",
                user_id=u,
                type=codecs.REWARD_TYPES[kind],
                value=value,
                ts_ms=1_764_000_000_000,
            )
        ).decode()
        for d, u, kind, value in cases
    ]
    assert ask(engine, jars, requests) == expected
