"""Registry version → a verified :class:`ServingModel`, or :class:`ModelRefused` saying why.

In order, each failure refusing the version (the current one keeps serving):

1. ``registry``: every file's SHA-256 and size against the manifest, the feature schema
   hash and encoding version (``ModelRegistry.open_verified``);
2. ``format``: the bundle loads (safetensors and numpy only; nothing is unpickled, so a
   pickle planted as weights is rejected unread);
3. ``catalogue``: the embedded posts exist in the catalogue;
4. ``index``: the shipped ANN index (``<version>/ann/``) loads and matches the
   embeddings; without one, the index is built from the embeddings;
5. ``smoke`` and ``recall``: see ``model_checks``.

Loading runs in the plan follower's thread, never on a request path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from feedrank.core.clock import Clock
from feedrank.core.features.schema import FloatArray, user_id
from feedrank.core.features.store import FeatureStore
from feedrank.core.models.serialization import ModelFormatError
from feedrank.core.registry import ModelBundle, ModelRegistry, RegistryError, read_bundle
from feedrank.core.registry.bundle import INDEX_DIR
from feedrank.core.settings import ExploreSettings
from feedrank.explore import metrics
from feedrank.explore.catalogue import Catalogue
from feedrank.explore.errors import ModelRefused
from feedrank.explore.model_checks import CheckWindow, ann_recall, smoke_score
from feedrank.explore.retrieval import CandidateIndex, IndexFormatError, RetrievalConfig
from feedrank.explore.serving_model import ServingModel

log = logging.getLogger(__name__)
DAY_MS = 24 * 3_600_000


class ModelLoader:
    """Loads and verifies registry versions for one worker (call it with a version)."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: FeatureStore,
        catalogue: Catalogue,
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
        except RegistryError as error:
            raise ModelRefused(version, "registry", str(error)) from error
        try:
            bundle = read_bundle(directory)
        except (ModelFormatError, OSError, ValueError) as error:
            raise ModelRefused(version, "format", str(error)) from error
        vectors = self._catalogue_vectors(version, bundle)
        index = self._index(version, directory / INDEX_DIR, bundle)
        model = ServingModel(version, bundle.two_tower, bundle.ranker, index, vectors)
        self._verify(model, bundle)
        elapsed = time.perf_counter() - started
        metrics.MODEL_LOAD_SECONDS.observe(elapsed)
        log.info("loaded and verified %s in %.2f s", version, elapsed)
        return model

    def _catalogue_vectors(self, version: str, bundle: ModelBundle) -> FloatArray:
        """Post vectors by catalogue row (rows the version did not embed stay zero)."""
        rows, size = bundle.post_index, len(self.catalogue)
        if rows.size and (rows.min() < 0 or rows.max() >= size):
            raise ModelRefused(version, "catalogue", f"embeds posts outside [0, {size})")
        if rows.size and np.unique(rows).size != rows.size:
            raise ModelRefused(version, "catalogue", "embeds a post more than once")
        if rows.size == size and (rows == np.arange(size)).all():
            return bundle.post_vectors
        vectors = np.zeros((size, bundle.post_vectors.shape[1]), dtype=np.float32)
        vectors[rows] = bundle.post_vectors
        return vectors

    def _index(self, version: str, shipped: Path, bundle: ModelBundle) -> CandidateIndex:
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
            return index  # whether it matches the embeddings, the recall check tells
        config = self.retrieval or replace(RetrievalConfig(dim=dim), build_threads=1)
        rows = bundle.post_index
        catalogue = self.catalogue
        return CandidateIndex.build(
            rows,
            bundle.post_vectors,
            languages=catalogue.language[rows],
            countries=catalogue.country[rows],
            region_locked=catalogue.region_locked[rows],
            created_ms=catalogue.created_ms[rows],
            config=config,
        )

    def _verify(self, model: ServingModel, bundle: ModelBundle) -> None:
        settings = self.settings
        # Check as of the time serving is at: requests may carry times ahead of this
        # process's clock (a simulator's), and the store answers only near its present.
        now_ms = max(self.clock.now_ms(), self.store.present_ms() or 0)
        window = CheckWindow(now_ms, now_ms - int(settings.max_post_age_days * DAY_MS))
        users = [self.store.user_features(user_id, now_ms) for user_id in self.check_user_ids]
        user_vectors = smoke_score(model, users, self.store, window, settings.recall_k)
        recall = ann_recall(
            model,
            users,
            user_vectors,
            embedded=(bundle.post_index, bundle.post_vectors),
            catalogue=self.catalogue,
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


def check_user_ids(num_users: int, count: int) -> list[str]:
    """``count`` users spread over the catalogue of users, plus one never seen."""
    rows = np.linspace(0, max(num_users - 1, 0), num=min(count, num_users), dtype=np.int64)
    return [user_id(int(row)) for row in np.unique(rows)] + ["model-check-new-user"]
