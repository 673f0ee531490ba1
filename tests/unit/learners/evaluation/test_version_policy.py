"""A registry version as the target policy, over decisions the real ranking path logged
(ε-greedy at ε = 0.5, 30 shown of a pool of 50, the unshown ones in ``Decision.pool``):

* the version's probabilities range over the same pool as the logged propensities: at
  every slot both are ``ε / r`` or ``1 - ε + ε / r`` for the same ``r`` items left;
* when engagement follows a model, that model as the version is estimated better than
  the logging policy and the same model with its scores reversed clearly worse;
* decisions without a catalogue to re-join them, or not labelled yet, are skipped and
  counted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.core.exploration import policy_from_name
from feedrank.core.labelled import labelled_example
from feedrank.learners.evaluation import evaluate
from feedrank.learners.evaluation.version_policy import (
    DecisionSupport,
    DecisionSupports,
    VersionPolicy,
    VersionScorer,
    bundle_scorer,
)
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.v1 import events_pb2
from tests.support.compact_serving import SERVE_MS, ServedWorld, served_world
from tests.support.model_versions import all_posts, small_bundle

USERS = 150
EPSILON = 0.5  # explores enough for 150 decisions to tell the versions apart
POLICY = policy_from_name("epsilon_greedy", epsilon=EPSILON, temperature=1.0)


@pytest.fixture(scope="module")
def served() -> tuple[ServedWorld, list[events_pb2.Decision]]:
    world = served_world(num_users=USERS)
    payloads = world.serve(USERS, policy="epsilon_greedy", epsilon=EPSILON)
    return world, [events_pb2.Decision.FromString(payload) for payload in payloads]


@pytest.fixture(scope="module")
def supports(served: tuple[ServedWorld, list[events_pb2.Decision]]) -> DecisionSupports:
    world, decisions = served
    return DecisionSupports.from_decisions(decisions, PostFeatureRejoin(world.learner))


@pytest.fixture(scope="module")
def truth(served: tuple[ServedWorld, list[events_pb2.Decision]]) -> VersionScorer:
    """What engagement follows: a model of another seed than the logging one."""
    world, _ = served
    return bundle_scorer(small_bundle(all_posts(world.store, SERVE_MS), seed=11))


def labelled(
    decisions: list[events_pb2.Decision],
    supports: DecisionSupports,
    truth: VersionScorer,
    rng: np.random.Generator,
) -> list[events_pb2.LabelledExample]:
    """A label for every shown item: 50% engaged for an item among the top fifth of its
    decision's pool by ``truth``, else 2%."""
    examples = []
    for decision in decisions:
        support = supports.by_decision[decision.decision_id]
        scores = truth(support)
        top = np.sort(scores)[::-1][max(len(scores) // 5 - 1, 0)]
        for position, item in enumerate(sorted(decision.items, key=lambda i: i.position)):
            chance = 0.5 if scores[position] >= top else 0.02
            reward = float(rng.random() < chance)
            examples.append(labelled_example(decision, item, label_time_ms=SERVE_MS, reward=reward))
    return examples


def test_the_version_ranges_over_the_logged_pool(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
    supports: DecisionSupports,
    truth: VersionScorer,
) -> None:
    _, decisions = served
    assert not supports.skipped
    sizes = [len(support.posts) for support in supports.by_decision.values()]
    assert max(sizes) == 50  # the pool; smaller where the rules left fewer candidates
    assert sizes.count(50) >= USERS // 2
    logs = supports.logs_of(labelled(decisions, supports, truth, np.random.default_rng(1)))
    target = VersionPolicy(supports.by_decision, truth, POLICY).probabilities(logs)
    pool = np.array([len(supports.by_decision[d].posts) for d in logs.decision_ids])
    uniform = EPSILON / (pool - logs.positions)  # ε over the r items left at the slot
    for probabilities in (target, logs.propensities):
        exploit = probabilities - uniform
        assert np.all(np.isclose(exploit, 0.0) | np.isclose(exploit, 1.0 - EPSILON))


def test_the_engaging_model_beats_logging_and_its_reverse_is_refused(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
    supports: DecisionSupports,
    truth: VersionScorer,
) -> None:
    _, decisions = served
    logs = supports.logs_of(labelled(decisions, supports, truth, np.random.default_rng(2)))

    def reversed_truth(support: DecisionSupport) -> npt.NDArray[np.float64]:
        return -truth(support)

    good = evaluate(logs, VersionPolicy(supports.by_decision, truth, POLICY), weighting="item")
    bad = evaluate(
        logs, VersionPolicy(supports.by_decision, reversed_truth, POLICY), weighting="item"
    )
    good_dr, bad_dr, logged = good.by_name()["DR"], bad.by_name()["DR"], good.logging
    print(
        f"logging {logged.value:.4f}; the engaging model DR {good_dr.value:.4f} "
        f"[{good_dr.ci_low:.4f}, {good_dr.ci_high:.4f}] ESS {good_dr.ess:.0f}; reversed "
        f"{bad_dr.value:.4f} [{bad_dr.ci_low:.4f}, {bad_dr.ci_high:.4f}] ESS {bad_dr.ess:.0f}"
    )
    assert good_dr.value > logged.value
    assert bad_dr.ci_high < logged.value < good_dr.ci_high


def test_decisions_without_catalogue_or_final_labels_are_skipped_and_counted(
    served: tuple[ServedWorld, list[events_pb2.Decision]], truth: VersionScorer
) -> None:
    world, decisions = served
    without = DecisionSupports.from_decisions(decisions, rejoin=None)
    assert without.skipped == {"compact, and no catalogue to re-join it from": USERS}
    fresh = DecisionSupports.from_decisions(decisions, PostFeatureRejoin(world.learner))
    examples = labelled(decisions, fresh, truth, np.random.default_rng(3))
    logs = fresh.logs_of(examples[1:])  # the first decision misses a label
    assert logs.num_decisions == USERS - 1
    assert fresh.skipped == {"not every shown item labelled yet": 1}
