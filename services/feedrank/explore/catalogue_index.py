"""Every served model's ANN index and post vectors kept in step with the catalogue.

The catalogue feed applies entity events on its thread; :class:`CatalogueIndexer` notes
the post rows each event made servable or took down, and after each batch of records
(:meth:`flush`, the feed's ``after_batch``) embeds the new and changed posts with each
served model's post tower, writes their vectors and adds them to that model's index;
deleted posts leave every index. A model switched in later (a rollout) is brought up to
date when it is swapped in (:meth:`sync`): posts that arrived while it loaded are
embedded, posts deleted meanwhile are removed. A post changed while a version loaded
keeps the vector the loader gave it until its next change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from feedrank.catalogue import CatalogueChange, CatalogueState
from feedrank.core.feature_schema import IntArray
from feedrank.explore import metrics
from feedrank.explore.model_slots import ModelSlots, ServingSet
from feedrank.explore.serving_model import ServingModel
from feedrank.features import FeatureStore

log = logging.getLogger(__name__)
EMBED_BATCH = 4_096  # posts per post-tower call


class CatalogueIndexer:
    """Applies catalogue changes to the models in ``slots`` (see the module doc)."""

    def __init__(
        self,
        catalogue: CatalogueState,
        store: FeatureStore,
        slots: ModelSlots,
        now_ms: Callable[[], int],
    ) -> None:
        self.catalogue = catalogue
        self.store = store
        self.slots = slots
        self.now_ms = now_ms
        self._pending_upserts: list[IntArray] = []
        self._pending_deletes: list[IntArray] = []
        self._pending_lock = threading.Lock()
        self._apply_lock = threading.Lock()  # one writer of the indexes at a time
        catalogue.on_change(self._note)
        slots.on_swap(self.sync)

    def flush(self) -> None:
        """Apply the changes noted since the last flush to every served model."""
        with self._pending_lock:
            upserted, deleted = self._pending_upserts, self._pending_deletes
            self._pending_upserts, self._pending_deletes = [], []
        if not upserted and not deleted:
            return
        started = time.perf_counter()
        with self._apply_lock:
            serving = self.slots.current()
            if serving is None:
                return  # nothing serves yet: the first model indexes the catalogue whole
            rows = np.unique(np.concatenate(upserted)) if upserted else _none()
            gone = np.unique(np.concatenate(deleted)) if deleted else _none()
            gone = gone[~self.store.servable(gone)]  # a delete undone by a later upsert stays
            rows = rows[self.store.servable(rows)]
            for model in _distinct(serving):
                if gone.size:
                    model.index.remove(gone)
                self._index(model, rows)
        metrics.CATALOGUE_INDEX_SECONDS.observe(time.perf_counter() - started)
        metrics.CATALOGUE_INDEXED.labels(change="upsert").inc(int(rows.size))
        metrics.CATALOGUE_INDEXED.labels(change="delete").inc(int(gone.size))

    def sync(self, serving: ServingSet) -> None:
        """Bring the models of a newly swapped-in set up to date with the catalogue."""
        with self._apply_lock:
            live = self.catalogue.live_rows()
            for model in _distinct(serving):
                indexed = model.index.post_indices()
                stale = indexed[~self.store.servable(indexed)]
                if stale.size:
                    model.index.remove(stale)
                missing = np.setdiff1d(live, indexed, assume_unique=True)
                if missing.size:
                    log.info("indexing %d posts new since %s loaded", missing.size, model.version)
                    self._index(model, missing)

    def _note(self, change: CatalogueChange) -> None:
        with self._pending_lock:
            if change.upserted.size:
                self._pending_upserts.append(change.upserted)
            if change.deleted.size:
                self._pending_deletes.append(change.deleted)

    def _index(self, model: ServingModel, rows: IntArray) -> None:
        """Embed ``rows`` and add them; the eligibility columns come with their features."""
        for start in range(0, rows.size, EMBED_BATCH):
            chunk = rows[start : start + EMBED_BATCH]
            posts = self.store.post_features(chunk, self.now_ms())
            with self.catalogue.lock:
                created_ms = np.array(self.catalogue.post_column("created_ms")[chunk])
            vectors = model.two_tower.encode_posts(posts)
            model.index.add(
                chunk,
                vectors,
                languages=posts.language,
                countries=posts.country,
                region_locked=posts.region_locked,
                created_ms=created_ms,
            )


def _distinct(serving: ServingSet) -> list[ServingModel]:
    """The set's models, each once (two arms may serve one version)."""
    return list({id(model): model for model in serving.models.values()}.values())


def _none() -> IntArray:
    return np.empty(0, dtype=np.int64)
