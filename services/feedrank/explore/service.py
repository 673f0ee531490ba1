"""The ranking pipeline, transport-neutral: retrieve → rank → post-process → explore → log.

``ExploreService.rank`` is what the gRPC adapter calls. It reads the current
:class:`ServingSet` (model versions by arm and the traffic split, see ``model_slots``)
once at the start of a request, routes the user to an arm and serves it from that
arm's :class:`ServingModel`, so a hot swap never changes the model under a request in
flight. The deadline is checked between stages, so work stops once the caller has
given up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from feedrank.core.clock import Clock
from feedrank.core.compact_features import logged_user_features
from feedrank.core.decision_wire import UnshownPool, encode_decision
from feedrank.core.exploration import ExplorationPolicy, seed_for_decision
from feedrank.core.feature_schema import (
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    FloatArray,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
)
from feedrank.core.settings import ExploreSettings
from feedrank.core.time_units import HOUR_MS
from feedrank.explore import metrics
from feedrank.explore.deadline import Deadline
from feedrank.explore.decision_log import DecisionLogger
from feedrank.explore.errors import ModelNotLoaded
from feedrank.explore.model_slots import DEFAULT_ARM, ModelSlots, ServingSet
from feedrank.explore.queries import RankedPost, RankQuery, RankResult
from feedrank.explore.rules import RuleOutcome, UserRuleContext, apply_rules
from feedrank.explore.serving_model import ServingModel
from feedrank.features import FeatureStore
from feedrank.v1 import events_pb2


@contextmanager
def stage(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_LATENCY.labels(stage=name).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class Retrieved:
    """Retrieval's answer: the user's vector and the eligible candidates, best first."""

    user_vector: FloatArray
    post_indices: IntArray  # catalogue rows
    similarities: FloatArray  # of each candidate's post vector with ``user_vector``


@dataclass(frozen=True)
class Candidates:
    posts: PostFeatureBatch
    scores: FloatArray
    catalogue_versions: IntArray  # of each post's static features in ``posts``


class ExploreService:
    """Serves Rank calls from the current model; owns nothing transport-specific."""

    def __init__(
        self,
        *,
        store: FeatureStore,
        settings: ExploreSettings,
        policy: ExplorationPolicy,
        clock: Clock,
        decision_log: DecisionLogger | None = None,
        arm: str = DEFAULT_ARM,
        slots: ModelSlots | None = None,
        decision_ids: Callable[[], str] | None = None,
    ) -> None:
        """``decision_ids`` makes each decision's id (random by default); the id also
        seeds the decision's exploration, so a fixed sequence replays the same slates."""
        self.store = store
        self.settings = settings
        self.policy = policy
        self.clock = clock
        self.decision_log = decision_log
        self.arm = arm  # the arm ``load`` serves a single model on
        self.slots = slots or ModelSlots()
        self.decision_ids = decision_ids or _random_decision_id

    # Model lifecycle -------------------------------------------------------------
    def load(self, model: ServingModel) -> None:
        """Serve only ``model`` (all traffic, on ``self.arm``), switched atomically;
        requests in flight finish on what they started with. Serving plans with
        several arms are applied through ``self.slots`` (see ``plan_follower``)."""
        self.slots.swap(ServingSet.single(model, self.arm))

    def unload(self) -> None:
        self.slots.swap(None)

    @property
    def model_versions(self) -> dict[str, str]:
        """Model version by arm, empty when nothing is loaded."""
        serving = self.slots.current()
        return {} if serving is None else serving.versions

    def is_ready(self) -> bool:
        return self.slots.current() is not None

    def arm_of(self, user_id: str) -> str:
        """The arm that serves ``user_id`` now ("none" before a model is loaded)."""
        serving = self.slots.current()
        return "none" if serving is None else serving.route(user_id)[0]

    def close(self) -> None:
        if self.decision_log is not None:
            self.decision_log.close()

    # The pipeline ----------------------------------------------------------------
    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult:
        serving = self.slots.current()  # read once: a swap never reaches this request
        if serving is None:
            raise ModelNotLoaded("no model is loaded yet; the service is starting up")
        # Only this frame holds the set past the pipeline, and the pipeline's own frame
        # (which holds the model) is gone when it returns: the plan follower frees a
        # retired set's models once no request frame holds it (``free_when_unused``).
        return self._rank(serving, query, deadline)

    def _rank(self, serving: ServingSet, query: RankQuery, deadline: Deadline) -> RankResult:
        arm, model = serving.route(query.user_id)
        decision_id = self.decision_ids()
        with stage("features"):
            user = self.store.user_features(
                query.user_id,
                query.request_time_ms,
                fallback_language=query.language,
                fallback_country=query.country,
            )
        deadline.check("retrieve")
        with stage("retrieve"):
            retrieved = self.retrieve(model, user, query)
        metrics.CANDIDATES.labels(stage="retrieved").observe(len(retrieved.post_indices))
        deadline.check("rank")
        with stage("rank"):
            candidates = self.score(model, user, query, retrieved)
        deadline.check("post_process")
        with stage("post_process"):
            outcome = self._post_process(user, query, candidates)
        metrics.CANDIDATES.labels(stage="post_processed").observe(len(outcome.rows))
        deadline.check("explore")
        with stage("explore"):
            seed = seed_for_decision(decision_id)
            slate = self.policy.choose(outcome.adjusted_scores, query.limit, seed)
        metrics.CANDIDATES.labels(stage="shown").observe(len(slate.rows))
        shown_rows = outcome.rows[slate.rows]
        shown_scores = outcome.adjusted_scores[slate.rows]
        shown_posts = candidates.posts.take(shown_rows)
        shown_versions = candidates.catalogue_versions[shown_rows]
        items = tuple(
            RankedPost(
                post_id=identifier,
                position=position,
                score=float(score),
                propensity=float(propensity),
            )
            for position, (identifier, score, propensity) in enumerate(
                zip(
                    self.store.post_ids(shown_posts.post_index),
                    shown_scores,
                    slate.propensities,
                    strict=True,
                )
            )
        )
        # With explore.decision_delivery "acked" this waits for Kafka's acknowledgement
        # (bounded, decision_log.py): an answered call's decision is then on the topic.
        with stage("log"):
            self._log(
                decision_id=decision_id,
                seed=seed,
                version=model.version,
                arm=arm,
                user=user,
                query=query,
                shown_posts=shown_posts,
                shown_versions=shown_versions,
                items=items,
                pool=lambda: self._unshown_pool(candidates, outcome, slate.rows, query.limit),
            )
            self.store.record_seen(query.user_id, shown_posts.post_index, query.request_time_ms)
        return RankResult(decision_id, model.version, arm, items)

    def retrieve(self, model: ServingModel, user: UserFeatures, query: RankQuery) -> Retrieved:
        """The user's vector and the eligible candidates, best first (the pipeline's first
        stage; public for benchmarks that take the pipeline apart)."""
        user_vector = model.two_tower.encode_users([user])[0]
        country = query.country if query.country is not None else user.country
        max_age_ms = int(self.settings.max_post_age_days * 24 * HOUR_MS)
        post_indices, similarities = model.index.search(
            user_vector,
            self.settings.candidates,
            languages=sorted(_languages(user, query)),
            country=country,
            min_created_ms=query.request_time_ms - max_age_ms,
            max_created_ms=query.request_time_ms,
        )
        # A post taken down between the catalogue's update and its index's: never served.
        servable = self.store.servable(post_indices)
        return Retrieved(user_vector, post_indices[servable], similarities[servable])

    def score(
        self, model: ServingModel, user: UserFeatures, query: RankQuery, retrieved: Retrieved
    ) -> Candidates:
        """The candidates' impression-time features (and the catalogue versions of their
        static part) and the ranker's scores of them. The towers' similarity, a ranker
        input, is retrieval's: the same inner products, not computed again."""
        posts, versions = self.store.versioned_post_features(
            retrieved.post_indices, query.request_time_ms
        )
        scores = model.ranker.score_retrieved(
            user, posts, retrieved.similarities, query.request_time_ms, surface=query.surface
        )
        return Candidates(posts, scores.astype(np.float32), versions)

    def _post_process(
        self, user: UserFeatures, query: RankQuery, candidates: Candidates
    ) -> RuleOutcome:
        state = self.store.user_state(query.user_id, query.request_time_ms)
        context = UserRuleContext(
            blocked_creators=state.blocked_creators,
            hidden_posts=state.hidden_posts,
            reported_posts=state.reported_posts,
            seen_posts=state.seen_posts,
            languages=_languages(user, query),
            sensitive_filter=user.sensitive_filter,
            country=query.country if query.country is not None else user.country,
        )
        outcome = apply_rules(candidates.posts, candidates.scores, context, self.settings.rules)
        for rule, count in outcome.dropped.items():
            metrics.RULE_DROPS.labels(rule=rule).inc(count)
        for rule, count in outcome.reordered.items():
            metrics.RULE_REORDERS.labels(rule=rule).inc(count)
        return outcome

    def _log(
        self,
        *,
        decision_id: str,
        seed: int,
        version: str,
        arm: str,
        user: UserFeatures,
        query: RankQuery,
        shown_posts: PostFeatureBatch,
        shown_versions: IntArray,
        items: tuple[RankedPost, ...],
        pool: Callable[[], UnshownPool | None],
    ) -> None:
        if self.decision_log is None:
            return
        compact = self.settings.decision_features == "compact"
        unshown = pool() if self.settings.log_pool else None
        if unshown is not None and not compact:
            unshown = replace(unshown, catalogue_versions=None)
        header = events_pb2.Decision(  # every field but the items
            decision_id=decision_id,
            event_time_ms=query.request_time_ms,
            user_id=query.user_id,
            model_version=version,
            arm=arm,
            exploration_policy=self.policy.kind,
            exploration_seed=seed,
            user_features=(
                logged_user_features(user, query.request_time_ms) if compact else user.to_proto()
            ),
            context={"surface": query.surface, **_context_codes(query)},
        )
        encoded = encode_decision(
            header, shown_posts, items, shown_versions if compact else None, unshown
        )
        self.decision_log.log_encoded(query.user_id, encoded)

    def _unshown_pool(
        self, candidates: Candidates, outcome: RuleOutcome, shown: IntArray, limit: int
    ) -> UnshownPool | None:
        """The exploration pool's items the slate did not take (list order); None when it
        took them all (a feed at least as long as the pool)."""
        pool = self.policy.pool(len(outcome.rows), limit)
        if pool <= len(shown):  # the slate is drawn from the pool: nothing is left
            return None
        unshown = np.setdiff1d(np.arange(pool, dtype=np.int64), shown, assume_unique=True)
        rows = outcome.rows[unshown]
        posts = candidates.posts.take(rows)
        return UnshownPool(
            posts=posts,
            post_ids=self.store.post_ids(posts.post_index),
            scores=outcome.adjusted_scores[unshown].tolist(),
            catalogue_versions=candidates.catalogue_versions[rows],
        )


def _languages(user: UserFeatures, query: RankQuery) -> frozenset[int]:
    """The user's own language plus the one the request asks for."""
    extra = {query.language} if query.language is not None else set()
    return frozenset({user.language} | extra)


def _context_codes(query: RankQuery) -> dict[str, str]:
    codes = {}
    if query.language is not None:
        codes["language"] = LANGUAGE_VOCABULARY.code(query.language)
    if query.country is not None:
        codes["country"] = COUNTRY_VOCABULARY.code(query.country)
    return codes


def _random_decision_id() -> str:
    return uuid.uuid4().hex
