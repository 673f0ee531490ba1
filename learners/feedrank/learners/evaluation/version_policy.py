"""A registry model version as the target policy: it re-ranks each logged decision's
exploration pool and explores it as the logging policy did.

The support of a logged decision is its **exploration pool**: the shown items and (with
``explore.log_pool``) the pool's unshown ones, ``Decision.pool``. These are exactly the
items the logged propensities range over (``docs/exploration.md``). The version scores
them with its ranker (its own two-tower similarity included, posts as of the decision),
orders them by score and applies the same exploration policy, so the target probability
of the logged post at position ``j`` is

    π(a_j | pool, a_0 … a_{j-1}) = policy.next_position_probabilities(version's order)[a_j]

the same conditional as the logged ``p_j``. The estimate is therefore the value of the
version **re-ranking the logging policy's pool**. Two parts of serving are not replayed,
and ``docs/replay-and-evaluation.md`` says what that means: candidates the version would
have retrieved that were not in the logged pool (they have no logged outcome), and the
rules' reordering (freshness, diversity), which orders the logging list but not the
version's: the version's raw scores order the pool.

Example::

    supports = DecisionSupports.from_decisions(decisions, rejoin)
    target = VersionPolicy(supports, bundle_scorer(read_bundle(path)), policy)
    report = evaluate(supports.logs_of(examples), target)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.core.exploration import ExplorationPolicy
from feedrank.core.feature_schema import PostFeatureBatch, UserFeatures
from feedrank.learners.evaluation.logged_data import FloatColumn, LoggedBandit, from_examples
from feedrank.learners.evaluation.target import TargetPolicyError
from feedrank.learners.examples import InvalidExampleError, batch_from_examples
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.registry.bundle import ModelBundle
from feedrank.v1 import events_pb2

F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DecisionSupport:
    """One logged decision as a target policy sees it: the user, and the pool's posts
    (shown ones first, in position order, then the unshown ones) as of the decision."""

    user: UserFeatures
    posts: PostFeatureBatch
    shown_post_ids: tuple[str, ...]
    at_ms: int
    surface: str
    exploration_policy: int  # events_pb2.ExplorationPolicy the decision was logged with
    model_version: str  # what served the decision, on which arm
    arm: str


VersionScorer = Callable[[DecisionSupport], F64Array]
"""A version's scores of a support's posts (higher: shown earlier)."""


def bundle_scorer(bundle: ModelBundle) -> VersionScorer:
    """The ranker's engagement probabilities, as explore scores candidates: the user and
    post towers' similarity as an input, every post at the top position."""

    def score(support: DecisionSupport) -> F64Array:
        user_vector = bundle.two_tower.encode_users([support.user])[0]
        post_vectors = bundle.two_tower.encode_posts(support.posts)
        return bundle.ranker.score(
            support.user,
            support.posts,
            user_vector,
            post_vectors,
            support.at_ms,
            surface=support.surface,
        )

    return score


class _PoolItem:
    """A pool item as :func:`batch_from_examples` reads an example (no label, no
    propensity: only the features are used)."""

    __slots__ = (
        "decision_id",
        "decision_time_ms",
        "post_features",
        "post_id",
        "user_features",
        "user_id",
    )
    position = 0
    propensity = 1.0
    engaged = False

    def __init__(
        self, decision: events_pb2.Decision, post_id: str, features: events_pb2.FeatureVector
    ) -> None:
        self.decision_id = decision.decision_id
        self.user_id = decision.user_id
        self.decision_time_ms = decision.event_time_ms
        self.user_features = decision.user_features
        self.post_id = post_id
        self.post_features = features


@dataclass
class DecisionSupports:
    """The supports of logged decisions, by decision id, and why others have none."""

    by_decision: dict[str, DecisionSupport]
    skipped: Counter[str]

    @classmethod
    def from_decisions(
        cls, decisions: Iterable[events_pb2.Decision], rejoin: PostFeatureRejoin | None
    ) -> DecisionSupports:
        """Each decision's support; a decision is skipped (counted by reason) when an
        item's post version cannot be re-joined or its features do not read."""
        supports = cls({}, Counter())
        for decision in decisions:
            support = supports._support(decision, rejoin)
            if isinstance(support, str):
                supports.skipped[support] += 1
            else:
                supports.by_decision[decision.decision_id] = support
        return supports

    def logs_of(self, examples: Iterable[events_pb2.LabelledExample]) -> LoggedBandit:
        """Logged rows of the decisions that have a support and an example (a final
        label) for every shown item; the others are counted in ``skipped``."""
        by_decision: dict[str, list[events_pb2.LabelledExample]] = {}
        for example in examples:
            if example.decision_id in self.by_decision:
                by_decision.setdefault(example.decision_id, []).append(example)
        complete = []
        for decision_id, support in self.by_decision.items():
            labelled = by_decision.get(decision_id, [])
            if {example.post_id for example in labelled} == set(support.shown_post_ids):
                complete.extend(labelled)
            else:
                self.skipped["not every shown item labelled yet"] += 1
        return from_examples(complete)

    @staticmethod
    def _support(
        decision: events_pb2.Decision, rejoin: PostFeatureRejoin | None
    ) -> DecisionSupport | str:
        if not decision.items:
            return "nothing shown"
        if rejoin is not None:
            shown, pool = rejoin.shown_items(decision), rejoin.pool_items(decision)
            if len(shown) != len(decision.items) or len(pool) != len(decision.pool):
                return "a post version not in the catalogue"
        elif any(item.catalogue_version for item in (*decision.items, *decision.pool)):
            return "compact, and no catalogue to re-join it from"
        else:
            shown = [(item, item.features) for item in decision.items]
            pool = [(item, item.features) for item in decision.pool]
        ordered = sorted(shown, key=lambda pair: pair[0].position)
        views = [_PoolItem(decision, item.post_id, features) for item, features in ordered]
        views += [_PoolItem(decision, item.post_id, features) for item, features in pool]
        try:
            batch = batch_from_examples(views)
        except InvalidExampleError as error:
            return f"unreadable features ({error.field})"
        return DecisionSupport(
            user=batch.users[0],
            posts=batch.posts,
            shown_post_ids=tuple(item.post_id for item, _ in ordered),
            at_ms=decision.event_time_ms,
            surface=decision.context.get("surface", ""),
            exploration_policy=decision.exploration_policy,
            model_version=decision.model_version,
            arm=decision.arm,
        )


class VersionPolicy:
    """The target probabilities of a version re-ranking each decision's pool
    (a :class:`~feedrank.learners.evaluation.target.TargetPolicy`)."""

    def __init__(
        self,
        supports: Mapping[str, DecisionSupport],
        scorer: VersionScorer,
        policy: ExplorationPolicy,
    ) -> None:
        self.supports = supports
        self.scorer = scorer
        self.policy = policy

    def probabilities(self, logs: LoggedBandit) -> FloatColumn:
        target = np.zeros(logs.num_rows, dtype=np.float64)
        starts = np.searchsorted(logs.decision_index, np.arange(logs.num_decisions + 1))
        for decision in range(logs.num_decisions):
            rows = np.arange(starts[decision], starts[decision + 1])
            decision_id = logs.decision_ids[int(rows[0])]
            support = self.supports.get(decision_id)
            if support is None:
                raise TargetPolicyError(f"decision {decision_id} has no logged pool to re-rank")
            target[rows] = self._decision_probabilities(support, logs, rows)
        return target

    def _decision_probabilities(
        self, support: DecisionSupport, logs: LoggedBandit, rows: npt.NDArray[np.int64]
    ) -> F64Array:
        if support.exploration_policy != self.policy.kind:
            raise TargetPolicyError(
                f"a decision logged with exploration policy {support.exploration_policy} "
                f"cannot be replayed with {self.policy.kind}"
            )
        scores = np.asarray(self.scorer(support), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")  # the version's list, best first
        rank_of = np.empty_like(order)
        rank_of[order] = np.arange(order.size)
        shown = len(support.shown_post_ids)
        positions = logs.positions[rows]
        for row, position in zip(rows.tolist(), positions.tolist(), strict=True):
            if logs.post_ids[row] != support.shown_post_ids[position]:
                raise TargetPolicyError(
                    f"decision {logs.decision_ids[row]}: the example at position {position} "
                    f"is {logs.post_ids[row]}, the decision showed "
                    f"{support.shown_post_ids[position]}"
                )
        probabilities = np.empty(len(rows), dtype=np.float64)
        for index, position in enumerate(positions.tolist()):
            placed = rank_of[:position]  # support rows 0 .. position-1 are the shown prefix
            distribution = self.policy.next_position_probabilities(scores[order], placed, shown)
            probabilities[index] = distribution[rank_of[position]]
        return probabilities
