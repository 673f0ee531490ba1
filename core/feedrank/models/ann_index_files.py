"""A :class:`~feedrank.models.ann_index.CandidateIndex` on disk: what learners ship.

``index.json`` (format, retrieval config, which languages have a graph), then per
schema language ``<code>.npz`` (numpy columns by slot, no pickle: post index, vector,
country, region lock, creation time, alive) and ``<code>.hnsw`` (hnswlib's own file)
where the partition has a graph. Slots are saved as they are, dead ones included, since
the graph's labels are slots. Languages new to one serving process are not saved: each
worker indexes those posts itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import hnswlib
import numpy as np
import numpy.typing as npt

from feedrank.core import huge_pages
from feedrank.core.feature_schema import LANGUAGES, BoolArray, FloatArray, IntArray

INDEX_FORMAT = "feedrank-candidate-index/2"  # 2: graph labels are slots, dead slots kept
MANIFEST = "index.json"
_ARRAYS = ("post_index", "vectors", "country", "region_locked", "created_ms", "alive")


class IndexFormatError(ValueError):
    """A saved candidate index that cannot be loaded."""


@dataclass(frozen=True)
class SlotColumns:
    """One partition's slots [0, used): post index -1 where the slot is dead."""

    post_index: IntArray
    vectors: FloatArray
    country: npt.NDArray[np.int16]
    region_locked: BoolArray
    created_ms: IntArray
    alive: BoolArray
    graph: Any = None  # an hnswlib.Index, or None below the partition's graph threshold


class SavedPartition(Protocol):
    def slot_columns(self) -> SlotColumns: ...


def save(directory: Path, config: dict[str, Any], partitions: Sequence[SavedPartition]) -> None:
    """Write the schema languages' partitions and the manifest (``config`` as a dict)."""
    directory.mkdir(parents=True, exist_ok=True)
    graphs: list[int] = []
    for language, partition in enumerate(partitions[: len(LANGUAGES)]):
        columns = partition.slot_columns()
        np.savez(
            directory / f"{LANGUAGES[language]}.npz",
            **{name: getattr(columns, name) for name in _ARRAYS},
        )
        if columns.graph is not None:
            columns.graph.save_index(str(directory / f"{LANGUAGES[language]}.hnsw"))
            graphs.append(language)
    manifest = {"format": INDEX_FORMAT, "config": config, "graphs": graphs}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))


def load(directory: Path) -> tuple[dict[str, Any], list[SlotColumns]]:
    """The saved config (a dict, checked by the caller) and each language's slots."""
    manifest = _read_manifest(directory / MANIFEST)
    config = manifest["config"]
    dim, ef_search = config.get("dim"), config.get("ef_search")
    if not isinstance(dim, int) or not isinstance(ef_search, int) or dim < 1 or ef_search < 1:
        raise IndexFormatError(f"{directory / MANIFEST}: dim and ef_search must be positive")
    saved = []
    for language, code in enumerate(LANGUAGES):
        columns = _read_columns(directory / f"{code}.npz", dim)
        if language in manifest["graphs"]:
            graph = _read_graph(directory / f"{code}.hnsw", dim, ef_search)
            if graph.element_count < columns.alive.size:
                raise IndexFormatError(f"{code}.hnsw holds fewer slots than its columns")
            columns = SlotColumns(**{name: getattr(columns, name) for name in _ARRAYS}, graph=graph)
        saved.append(columns)
    return config, saved


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise IndexFormatError(f"cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
        raise IndexFormatError(f"{path} is not a {INDEX_FORMAT} manifest")
    if not isinstance(manifest.get("config"), dict) or not isinstance(manifest.get("graphs"), list):
        raise IndexFormatError(f"{path} lacks config or graphs")
    return manifest


def _read_columns(path: Path, dim: int) -> SlotColumns:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            columns = {name: arrays[name] for name in _ARRAYS}
    except (OSError, KeyError, ValueError) as error:
        raise IndexFormatError(f"cannot read {path}: {error}") from error
    used = columns["alive"].shape[0]
    expected = {
        "post_index": (np.int64, (used,)),
        "vectors": (np.float32, (used, dim)),
        "country": (np.int16, (used,)),
        "region_locked": (np.bool_, (used,)),
        "created_ms": (np.int64, (used,)),
        "alive": (np.bool_, (used,)),
    }
    for name, (dtype, shape) in expected.items():
        if columns[name].dtype != dtype or columns[name].shape != shape:
            raise IndexFormatError(f"{path}: {name} is not {np.dtype(dtype)} {shape}")
    live = columns["post_index"][columns["alive"]]
    if live.size and (live.min() < 0 or np.unique(live).size != live.size):
        raise IndexFormatError(f"{path}: live post indices must be non-negative and distinct")
    if not np.isfinite(columns["vectors"]).all():
        raise IndexFormatError(f"{path}: vectors hold NaN or infinity")
    return SlotColumns(**columns)


def _read_graph(path: Path, dim: int, ef_search: int) -> Any:
    graph = hnswlib.Index(space="ip", dim=dim)
    try:
        with huge_pages.advised():  # the graph is read at random: see huge_pages
            graph.load_index(str(path))
    except RuntimeError as error:
        raise IndexFormatError(f"cannot load graph {path}: {error}") from error
    graph.set_ef(ef_search)
    return graph
