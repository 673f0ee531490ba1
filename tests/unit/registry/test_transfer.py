"""A version streamed as parts arrives byte-identical, and any disagreement with its
manifest is refused with nothing left behind."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feedrank.registry import (
    CHUNK_BYTES,
    FileChunk,
    FileDigest,
    LocalModelRegistry,
    TrainingData,
    TransferRefusedError,
    VersionHeader,
    VersionNotFoundError,
    VersionPart,
    VersionRefusedError,
    VersionUnavailableError,
    version_parts,
)

CHUNK = 1000  # small chunks, so a few-kilobyte file spans several


def publish_files(registry: LocalModelRegistry, files: dict[str, bytes]) -> str:
    def write(directory: Path) -> None:
        for name, data in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(data)

    training = TrainingData(source="test", examples=1, start_ms=1, end_ms=2)
    return registry.publish(write, training=training).version


FILES = {
    "weights.bin": bytes(range(256)) * 10,  # 2,560 bytes: three chunks of 1,000
    "ann/graph.bin": b"graph" * 300,
    "empty.json": b"",
}


@pytest.fixture
def source(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "source")


@pytest.fixture
def replica(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "replica")


def parts(registry: LocalModelRegistry, version: str) -> list[VersionPart]:
    return list(version_parts(registry, version, chunk_bytes=CHUNK))


def leftovers(registry: LocalModelRegistry) -> list[str]:
    """Everything under the replica's root but its (empty) versions folder."""
    if not registry.root.exists():
        return []
    return sorted(
        path.relative_to(registry.root).as_posix()
        for path in registry.root.rglob("*")
        if path != registry.root / "versions"
    )


def test_parts_are_the_manifest_then_ordered_chunks(source: LocalModelRegistry) -> None:
    version = publish_files(source, FILES)
    streamed = parts(source, version)
    header = streamed[0]
    assert isinstance(header, VersionHeader)
    assert header.manifest_json == (source.directory(version) / "manifest.json").read_bytes()
    assert header.files == source.manifest(version).files
    chunks = [part for part in streamed[1:] if isinstance(part, FileChunk)]
    assert len(chunks) == len(streamed) - 1
    assert all(len(chunk.data) <= CHUNK for chunk in chunks)
    assert [(c.path, c.offset) for c in chunks if c.path == "weights.bin"] == [
        ("weights.bin", 0),
        ("weights.bin", 1000),
        ("weights.bin", 2000),
    ]
    assert [c for c in chunks if c.path == "empty.json"] == [FileChunk("empty.json", 0, b"")]
    assert CHUNK_BYTES == 1 << 20


def test_a_received_version_is_byte_identical_and_verifies(
    source: LocalModelRegistry, replica: LocalModelRegistry
) -> None:
    version = publish_files(source, FILES)
    manifest = replica.receive(version, parts(source, version))
    assert manifest == source.manifest(version)
    directory = replica.open_verified(version)
    original = source.directory(version)
    for name in [*FILES, "manifest.json"]:
        assert (directory / name).read_bytes() == (original / name).read_bytes()
    assert [m.version for m in replica.versions()] == [version]
    assert all(item.startswith(f"versions/{version}") for item in leftovers(replica))


Parts = list[VersionPart]


def _header(streamed: Parts) -> VersionHeader:
    header = streamed[0]
    assert isinstance(header, VersionHeader)
    return header


def _chunks(streamed: Parts) -> list[FileChunk]:
    return [part for part in streamed if isinstance(part, FileChunk)]


def _edit_chunk(
    streamed: Parts, path: str, offset: int, edit: Callable[[FileChunk], Parts]
) -> Parts:
    """``streamed`` with the chunk at (path, offset) replaced by ``edit(chunk)``."""
    out: Parts = [_header(streamed)]
    for chunk in _chunks(streamed):
        out += edit(chunk) if (chunk.path, chunk.offset) == (path, offset) else [chunk]
    return out


def _flip(chunk: FileChunk) -> Parts:
    return [dataclasses.replace(chunk, data=bytes([chunk.data[0] ^ 1]) + chunk.data[1:])]


def _longer(streamed: Parts) -> Parts:
    last = _chunks(streamed)[-1]
    return [*streamed, dataclasses.replace(last, offset=last.offset + len(last.data), data=b"x")]


TAMPERINGS: dict[str, Callable[[Parts], Parts]] = {
    "flipped_byte": lambda s: _edit_chunk(s, "weights.bin", 1000, _flip),
    "truncated": lambda s: _edit_chunk(s, "weights.bin", 2000, lambda c: []),
    "reordered": lambda s: _edit_chunk(s, "weights.bin", 1000, lambda c: []),
    "longer": _longer,
    "unknown_path": lambda s: [
        _header(s),
        dataclasses.replace(_chunks(s)[0], path="../outside.bin"),
    ],
    "repeated_file": lambda s: [*s, _chunks(s)[0]],
    "chunk_first": lambda s: [*_chunks(s)[:1]],
    "other_version": lambda s: [dataclasses.replace(_header(s), version="v0099")],
    "file_list": lambda s: [
        dataclasses.replace(
            _header(s),
            files={
                **_header(s).files,
                "extra.bin": FileDigest(hashlib.sha256(b"").hexdigest(), 0),
            },
        )
    ],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("flipped_byte", "weights.bin fails its checksum"),
        ("truncated", "weights.bin is truncated: 2000 of 2560 bytes arrived"),
        ("reordered", "chunk at byte 2000, expected byte 1000"),
        ("longer", "runs past its manifest's"),
        ("unknown_path", "'../outside.bin' is not in its manifest"),
        ("repeated_file", "was sent twice"),
        ("chunk_first", "a file chunk came before the manifest"),
        ("other_version", "asked for v0001, received v0099"),
        ("file_list", "the file list sent disagrees with the manifest sent"),
    ],
)
def test_a_stream_that_disagrees_with_its_manifest_is_refused_leaving_nothing(
    source: LocalModelRegistry, replica: LocalModelRegistry, change: str, message: str
) -> None:
    version = publish_files(source, FILES)
    with pytest.raises(TransferRefusedError, match=message):
        replica.receive(version, TAMPERINGS[change](parts(source, version)))
    assert replica.versions() == []
    assert leftovers(replica) == []


def test_a_stream_ending_before_its_manifest_is_refused(replica: LocalModelRegistry) -> None:
    with pytest.raises(TransferRefusedError, match="ended before its manifest"):
        replica.receive("v0001", [])
    assert leftovers(replica) == []


def test_a_source_breaking_off_passes_through_leaving_nothing(
    source: LocalModelRegistry, replica: LocalModelRegistry
) -> None:
    version = publish_files(source, FILES)

    def broken() -> Iterator[VersionPart]:
        yield from parts(source, version)[:3]
        raise VersionUnavailableError("the deploy service went away")

    with pytest.raises(VersionUnavailableError, match="went away"):
        replica.receive(version, broken())
    assert leftovers(replica) == []


def test_an_unknown_version_or_file_is_not_found(source: LocalModelRegistry) -> None:
    version = publish_files(source, FILES)
    with pytest.raises(VersionNotFoundError, match="no version v0042"):
        parts(source, "v0042")
    with pytest.raises(VersionNotFoundError, match="not a version name"):
        parts(source, "../v0001")
    with pytest.raises(VersionNotFoundError, match=r"no file 'other\.bin'"):
        source.open_file(version, "other.bin")


def test_a_manifest_naming_another_version_is_not_sent(source: LocalModelRegistry) -> None:
    version = publish_files(source, FILES)
    path = source.directory(version) / "manifest.json"
    path.chmod(0o644)
    path.write_text(path.read_text().replace(f'"{version}"', '"v0007"'))
    with pytest.raises(VersionRefusedError, match="names version v0007"):
        parts(source, version)
