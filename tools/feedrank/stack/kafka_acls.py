"""The ACLs of a secured broker: what each role of the loop may read and write.

One SCRAM user per role; :func:`role_acls` says what each may do and
:func:`create_role_acls` writes it to the broker as the admin (a super user):

==========  ===========================================  ==================================
role        topics                                       groups, transactions
==========  ===========================================  ==================================
app         write rewards, posts, users, graph           -
explore     write decisions, dlq; read posts, users,     groups ``feedrank-explore-*``,
            graph, decisions, rewards                    ``feedrank-catalogue-*``
join        read decisions, rewards, metrics; write      groups and transactional ids
            examples, metrics, dlq                       ``feedrank-join*``, group
                                                         ``feedrank-metrics-exporter*``;
                                                         idempotent write on the cluster
learner     read examples, decisions, posts, users,      groups ``feedrank-learner*``,
            graph; write dlq                             ``feedrank-train-*``,
                                                         ``feedrank-catalogue-*``
deploy      read metrics                                 groups ``feedrank-deploy-*``
==========  ===========================================  ==================================

Reading or writing a topic implies describing it. Anything else is refused
(``TOPIC_AUTHORIZATION_FAILED``, ``GROUP_AUTHORIZATION_FAILED``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from feedrank.core.settings import TopicSettings

APP, EXPLORE, JOIN, LEARNER, DEPLOY = "app", "explore", "join", "learner", "deploy"
ROLES = (APP, EXPLORE, JOIN, LEARNER, DEPLOY)

# Consumer-group and transactional-id prefixes of each role's clients, as the code
# names them (join_runner.GROUP_ID, learner.group_id's default, ...).
CATALOGUE_GROUPS = "feedrank-catalogue-"
ROLE_GROUPS: Mapping[str, tuple[str, ...]] = {
    APP: (),
    EXPLORE: ("feedrank-explore-", CATALOGUE_GROUPS),
    JOIN: ("feedrank-join", "feedrank-metrics-exporter"),
    LEARNER: ("feedrank-learner", "feedrank-train-", CATALOGUE_GROUPS),
    DEPLOY: ("feedrank-deploy-",),
}
JOIN_TRANSACTIONS = "feedrank-join"


def role_topics(topics: TopicSettings) -> Mapping[str, tuple[Sequence[str], Sequence[str]]]:
    """Per role: the topics it reads, and the topics it writes."""
    entities = topics.entities()
    return {
        APP: ((), (topics.rewards, *entities)),
        EXPLORE: ((*entities, topics.decisions, topics.rewards), (topics.decisions, topics.dlq)),
        JOIN: (
            (topics.decisions, topics.rewards, topics.metrics),
            (topics.examples, topics.metrics, topics.dlq),
        ),
        LEARNER: ((topics.examples, topics.decisions, *entities), (topics.dlq,)),
        DEPLOY: ((topics.metrics,), ()),
    }


def role_acls(
    topics: TopicSettings,
    users: Mapping[str, str],
    *,
    transactional_prefix: str = JOIN_TRANSACTIONS,
) -> list[AclBinding]:
    """The ACLs that let each role's user (``users``: role to SCRAM user name) do its
    job and nothing more; roles missing from ``users`` get none."""
    bindings: list[AclBinding] = []
    for role, (reads, writes) in role_topics(topics).items():
        user = users.get(role)
        if user is None:
            continue
        principal = f"User:{user}"
        bindings += _allow(principal, ResourceType.TOPIC, reads, AclOperation.READ)
        bindings += _allow(principal, ResourceType.TOPIC, writes, AclOperation.WRITE)
        bindings += _allow(
            principal,
            ResourceType.GROUP,
            ROLE_GROUPS[role],
            AclOperation.READ,
            ResourcePatternType.PREFIXED,
        )
        if role == JOIN:  # Flink's exactly-once sink: transactions of its own prefix
            bindings += _allow(
                principal,
                ResourceType.TRANSACTIONAL_ID,
                [transactional_prefix],
                AclOperation.WRITE,
                ResourcePatternType.PREFIXED,
            )
            bindings += _allow(
                principal, ResourceType.BROKER, ["kafka-cluster"], AclOperation.IDEMPOTENT_WRITE
            )
    return bindings


def create_role_acls(
    admin: AdminClient,
    topics: TopicSettings,
    users: Mapping[str, str],
    *,
    transactional_prefix: str = JOIN_TRANSACTIONS,
    timeout_s: float = 30.0,
) -> int:
    """Write :func:`role_acls` to the broker ``admin`` (a super user's client) talks to,
    and return (how many bindings) once the broker enforces them: the controller commits
    ACLs before the broker's authorizer has read them. Writing an ACL that exists
    already is not an error."""
    bindings = role_acls(topics, users, transactional_prefix=transactional_prefix)
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result()
    wanted = {str(binding) for binding in bindings}
    deadline = time.monotonic() + timeout_s
    while not wanted <= _enforced(admin, timeout_s):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not apply {len(wanted)} ACLs in {timeout_s} s")
        time.sleep(0.1)
    return len(bindings)


def _enforced(admin: AdminClient, timeout_s: float) -> set[str]:
    """Every ACL the broker's authorizer holds now (as strings)."""
    anything = cast(str, None)  # a filter's None matches any name (the stubs say str)
    every = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    described = admin.describe_acls(every, request_timeout=timeout_s).result()
    return {str(binding) for binding in described}


def _allow(
    principal: str,
    resource: ResourceType,
    names: Iterable[str],
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
) -> list[AclBinding]:
    return [
        AclBinding(resource, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)
        for name in names
    ]
