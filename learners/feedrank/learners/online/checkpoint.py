"""Durable learner state: the model, the stream position and the post catalogue, together.

A checkpoint is a directory ``checkpoints/ckpt-<n>`` holding the learner (weights,
optimizer, RNG), the posts it has seen and ``progress.json`` (the next Kafka offset of
every partition, how many examples were applied, a digest of their keys). It is
written completely and fsynced before ``CURRENT`` is atomically replaced to name it, so
after a crash ``CURRENT`` names a whole checkpoint whose offsets say exactly where to
resume: examples after them were never in the saved model, examples before them were.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from feedrank.core.durable_files import fsync_directory, fsync_path, replace_atomically
from feedrank.learners.online.learner import OnlineLearner
from feedrank.learners.posts import PostCatalogue

CURRENT_FILE = "CURRENT"
PROGRESS_FILE = "progress.json"
POSTS_FILE = "posts.safetensors"
_DIGEST_MODULUS = 1 << 64


@dataclass
class StreamProgress:
    """Where the learner stands in the example stream."""

    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    examples_applied: int = 0
    key_digest: int = 0  # sum of 64-bit key hashes mod 2**64: detects double application
    first_decision_ms: int = 0
    last_decision_ms: int = 0
    last_version: str = ""

    def record(self, keys: tuple[str, ...], first_ms: int, last_ms: int) -> None:
        """Account for applied examples with these keys and decision times."""
        self.examples_applied += len(keys)
        self.key_digest = (self.key_digest + key_digest(keys)) % _DIGEST_MODULUS
        self.first_decision_ms = min(self.first_decision_ms or first_ms, first_ms)
        self.last_decision_ms = max(self.last_decision_ms, last_ms)


def key_digest(keys: tuple[str, ...] | list[str]) -> int:
    """Sum of the keys' 64-bit hashes mod 2**64 (order-independent)."""
    total = 0
    for key in keys:
        total += int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return total % _DIGEST_MODULUS


@dataclass(frozen=True)
class Checkpoint:
    learner: OnlineLearner
    progress: StreamProgress
    posts: PostCatalogue


class CheckpointStore:
    """Atomic checkpoints under ``directory``; the previous one is removed after each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._checkpoints = directory / "checkpoints"

    def save(self, learner: OnlineLearner, progress: StreamProgress, posts: PostCatalogue) -> Path:
        self._checkpoints.mkdir(parents=True, exist_ok=True)
        previous = self._current_name()
        number = int(previous.removeprefix("ckpt-")) + 1 if previous else 1
        target = self._checkpoints / f"ckpt-{number:08d}"
        shutil.rmtree(target, ignore_errors=True)  # a half-written leftover of a crash
        learner.save(target)
        posts.save(target / POSTS_FILE)
        (target / PROGRESS_FILE).write_text(json.dumps(asdict(progress), sort_keys=True))
        for path in target.iterdir():
            fsync_path(path)
        fsync_directory(target)
        replace_atomically(
            self.directory / CURRENT_FILE,
            target.name.encode(),
            temporary=self.directory / f".{CURRENT_FILE}.tmp",
        )
        for old in self._checkpoints.iterdir():
            if old.name != target.name:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def load(self) -> Checkpoint | None:
        """The checkpoint ``CURRENT`` names, or None before the first one."""
        name = self._current_name()
        if not name:
            return None
        directory = self._checkpoints / name
        progress = StreamProgress(**json.loads((directory / PROGRESS_FILE).read_text()))
        return Checkpoint(
            OnlineLearner.load(directory), progress, PostCatalogue.load(directory / POSTS_FILE)
        )

    def progress(self) -> StreamProgress | None:
        """Only the progress of the current checkpoint (cheap; for status and tests)."""
        name = self._current_name()
        if not name:
            return None
        text = (self._checkpoints / name / PROGRESS_FILE).read_text()
        return StreamProgress(**json.loads(text))

    def _current_name(self) -> str:
        try:
            return (self.directory / CURRENT_FILE).read_text().strip()
        except FileNotFoundError:
            return ""
