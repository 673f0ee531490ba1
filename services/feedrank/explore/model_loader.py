"""Registry version → a verified :class:`ServingModel` over this process's catalogue, or
:class:`ModelRefused` saying why.

A version's embeddings and shipped index name posts by the learner's rows, with the
posts' ids beside them (``ModelBundle.post_ids``); this process's rows are its own
catalogue's. The loader maps one to the other by id, keeps the learner's vectors for
the posts the catalogue still serves, drops the ones it deleted, and embeds the posts
the version has not seen with the version's own post tower (from their content and
features now). So a version serves every live post, whatever order the catalogue
arrived in here.

In order, each failure refusing the version (the current one keeps serving):

1. ``registry``: every file's SHA-256 and size against the manifest, the feature schema
   hash and encoding version (``ModelRegistry.open_verified``; with
   ``explore.model_source`` 'deploy', after fetching it, see ``model_sources``);
2. ``format``: the bundle loads (safetensors and numpy only; nothing is unpickled, so a
   pickle planted as weights is rejected unread);
3. ``index``: the shipped ANN index (``<version>/ann/``) loads and matches the
   embeddings' dimension; without one, the index is built from the embeddings;
4. ``smoke`` and ``recall``: see ``model_checks``.

Loading runs in the plan follower's thread, never on a request path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.core.clock import Clock
from feedrank.core.feature_schema import COUNTRIES, FloatArray, IntArray
from feedrank.core.settings import ExploreSettings
from feedrank.core.time_units import DAY_MS
from feedrank.explore import metrics
from feedrank.explore.catalogue import Catalogue
from feedrank.explore.errors import ModelRefused, ModelUnavailable
from feedrank.explore.model_checks import CheckWindow, ann_recall, smoke_score
from feedrank.explore.serving_model import ServingModel
from feedrank.features import FeatureStore
from feedrank.models.ann_index import CandidateIndex, IndexFormatError, RetrievalConfig
from feedrank.models.packed_towers import PackedTowers
from feedrank.models.serialization import ModelFormatError
from feedrank.models.two_tower import TwoTowerModel
from feedrank.registry import ModelBundle, RegistryError, VersionUnavailableError, read_bundle
from feedrank.registry.bundle import INDEX_DIR

log = logging.getLogger(__name__)
EMBED_BATCH = 20_000  # posts per post-tower call when a loader embeds new posts


class VersionOpener(Protocol):
    """Where versions are opened: a ``ModelRegistry``, or a replica's cache
    (``model_sources``)."""

    def open_verified(self, version: str) -> Path:
        """The directory of ``version`` after checking every file against its manifest."""


class ModelLoader:
    """Loads and verifies registry versions for one worker (call it with a version)."""

    def __init__(
        self,
        registry: VersionOpener,
        store: FeatureStore,
        catalogue: CatalogueState,
        *,
        check_user_ids: Sequence[str],
        settings: ExploreSettings,
        clock: Clock,
        retrieval: RetrievalConfig | None = None,
    ) -> None:
        if not check_user_ids:
            raise ValueError("the checks need at least one user id")
        self.registry = registry
        self.store = store
        self.catalogue = catalogue
        self.check_user_ids = tuple(check_user_ids)
        self.settings = settings
        self.clock = clock
        self.retrieval = retrieval  # None: defaults for the version's dimension, one thread

    def __call__(self, version: str) -> ServingModel:
        return self.load(version)

    def load(self, version: str) -> ServingModel:
        started = time.perf_counter()
        try:
            directory = self.registry.open_verified(version)
        except VersionUnavailableError as error:
            raise ModelUnavailable(version, str(error)) from error
        except RegistryError as error:
            raise ModelRefused(version, "registry", str(error)) from error
        try:
            bundle = read_bundle(directory)
        except (ModelFormatError, OSError, ValueError) as error:
            raise ModelRefused(version, "format", str(error)) from error
        catalogue = Catalogue.snapshot(self.catalogue)
        rows = self._catalogue_rows(bundle, catalogue)
        known = rows >= 0
        index = self._index(version, directory / INDEX_DIR, bundle, rows, catalogue)
        missing = np.setdiff1d(catalogue.live_rows(), rows[known])
        embedded = self._embed(bundle.two_tower, missing, catalogue, index)
        # The served user tower is its packed form: numpy, one user per request.
        model = ServingModel(version, PackedTowers(bundle.two_tower), bundle.ranker, index)
        # The recall check's truth is the version's own embeddings, not the index's copy
        # of them: a shipped index built from other embeddings must fail it.
        own = (
            np.concatenate([rows[known], missing]),
            np.concatenate([bundle.post_vectors[known], embedded]),
        )
        self._verify(model, catalogue, own)
        elapsed = time.perf_counter() - started
        metrics.MODEL_LOAD_SECONDS.observe(elapsed)
        log.info(
            "loaded and verified %s in %.2f s (%d posts embedded here)",
            version,
            elapsed,
            missing.size,
        )
        return model

    def _catalogue_rows(self, bundle: ModelBundle, catalogue: Catalogue) -> IntArray:
        """This process's row of each embedded post; -1 where it is unknown or deleted."""
        ids = bundle.ids()
        rows = np.array(
            [-1 if (row := self.catalogue.post_row(post_id)) is None else row for post_id in ids],
            dtype=np.int64,
        )
        inside = (rows >= 0) & (rows < len(catalogue))
        rows[inside] = np.where(catalogue.alive[rows[inside]], rows[inside], -1)
        rows[~inside] = -1
        return rows

    def _index(
        self,
        version: str,
        shipped: Path,
        bundle: ModelBundle,
        rows: IntArray,
        catalogue: Catalogue,
    ) -> CandidateIndex:
        dim = int(bundle.post_vectors.shape[1])
        if shipped.is_dir():
            try:
                index = CandidateIndex.load(shipped)
            except (IndexFormatError, OSError, ValueError) as error:
                raise ModelRefused(version, "index", str(error)) from error
            if index.config.dim != dim:
                raise ModelRefused(
                    version,
                    "index",
                    f"the shipped index holds {index.config.dim}-d vectors, "
                    f"the embeddings are {dim}-d",
                )
            # The shipped index names posts by the learner's rows: relabel them to ours.
            row_of = np.full(int(bundle.post_index.max(initial=-1)) + 1, -1, dtype=np.int64)
            row_of[bundle.post_index] = rows
            index.relabel(row_of)
            self._complete(index, bundle, rows, catalogue)
            return index  # whether it matches the embeddings, the recall check tells
        config = self.retrieval or replace(RetrievalConfig(dim=dim), build_threads=1)
        known = rows >= 0
        served = rows[known]
        return CandidateIndex.build(
            served,
            bundle.post_vectors[known],
            **catalogue.index_attributes(served),
            config=config,
        )

    @staticmethod
    def _complete(
        index: CandidateIndex, bundle: ModelBundle, rows: IntArray, catalogue: Catalogue
    ) -> None:
        """Name the shipped index's posts the way this process does. A language or a
        country past the schema's has a process-local code: posts in such a language are
        not in a saved index at all (it holds the schema's languages), so they are added
        with the version's own vectors; a country past the schema's is rewritten in
        place (a filter attribute, no graph change)."""
        known = np.flatnonzero(rows >= 0)
        served = rows[known]
        absent = ~np.isin(served, index.post_indices())
        if absent.any():
            chosen = served[absent]
            index.add(
                chosen,
                bundle.post_vectors[known[absent]],
                **catalogue.index_attributes(chosen),
            )
        foreign = served[~absent & (catalogue.country[served] >= len(COUNTRIES))]
        if foreign.size:
            index.set_countries(foreign, catalogue.country[foreign])

    def _embed(
        self,
        two_tower: TwoTowerModel,
        rows: IntArray,
        catalogue: Catalogue,
        index: CandidateIndex,
    ) -> FloatArray:
        """Embed posts the version has not seen with its post tower and index them;
        returns their vectors."""
        two_tower.eval()
        embedded = np.empty((rows.size, two_tower.config.embedding_dim), dtype=np.float32)
        for start in range(0, rows.size, EMBED_BATCH):
            chunk = rows[start : start + EMBED_BATCH]
            posts = self.store.post_features(chunk, self._now_ms())
            embedded[start : start + chunk.size] = two_tower.encode_posts(posts)
            index.add(
                chunk,
                embedded[start : start + chunk.size],
                **catalogue.index_attributes(chunk),
            )
        return embedded

    def _now_ms(self) -> int:
        # As of the time serving is at: requests may carry times ahead of this process's
        # clock (a simulator's), and the store answers only near its present.
        return max(self.clock.now_ms(), self.store.present_ms() or 0)

    def _verify(
        self, model: ServingModel, catalogue: Catalogue, own: tuple[IntArray, FloatArray]
    ) -> None:
        """Smoke-score and check the index's recall against exact search over the
        version's ``own`` embeddings (rows, vectors)."""
        settings = self.settings
        now_ms = self._now_ms()
        window = CheckWindow(now_ms, now_ms - int(settings.max_post_age_days * DAY_MS))
        users = [self.store.user_features(user_id, now_ms) for user_id in self.check_user_ids]
        user_vectors = smoke_score(model, users, self.store, window, settings.recall_k)
        recall = ann_recall(
            model,
            users,
            user_vectors,
            embedded=own,
            catalogue=catalogue,
            window=window,
            k=settings.recall_k,
        )
        if recall < settings.recall_threshold:
            raise ModelRefused(
                model.version,
                "recall",
                f"ANN recall@{settings.recall_k} is {recall:.3f} against exact search over "
                f"its own embeddings; at least {settings.recall_threshold} is required",
            )


def check_user_ids(catalogue: CatalogueState, count: int) -> list[str]:
    """Up to ``count`` users spread over the catalogue's users, plus one never seen."""
    known = catalogue.user_ids()
    picks = np.unique(np.linspace(0, len(known) - 1, num=min(count, len(known)), dtype=np.int64))
    return [known[int(pick)] for pick in picks] + ["model-check-new-user"]
