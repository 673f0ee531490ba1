from __future__ import annotations

from feedrank.core.settings import TopicSettings
from feedrank.core.time_units import DAY_MS
from feedrank.stack.topics import standard_topics


def test_standard_topics_have_explicit_partitions_and_retention() -> None:
    settings = TopicSettings(partitions=4)
    specs = {spec.name: spec for spec in standard_topics(settings)}
    assert set(specs) == set(settings.names())
    assert all(spec.partitions == 4 for spec in specs.values())
    assert specs["feedrank.decisions"].retention_ms >= 15 * DAY_MS
    assert specs["feedrank.rewards"].retention_ms >= 15 * DAY_MS
    assert specs["feedrank.dlq"].retention_ms == 7 * DAY_MS
    new_topic = specs["feedrank.rewards"].new_topic()
    assert new_topic.config is not None
    assert new_topic.config["retention.ms"] == str(15 * DAY_MS)


def test_catalogue_topics_keep_the_latest_state_per_key_for_good() -> None:
    specs = {spec.name: spec for spec in standard_topics(TopicSettings())}
    for name in ("feedrank.posts", "feedrank.users"):
        config = specs[name].new_topic().config
        assert config is not None
        assert config["cleanup.policy"] == "compact"
        assert config["retention.ms"] == "-1"
    graph = specs["feedrank.graph"].new_topic().config
    assert graph is not None
    assert (graph["cleanup.policy"], graph["retention.ms"]) == ("delete", "-1")


def test_superseded_post_versions_stay_on_the_topic_as_long_as_decisions_do() -> None:
    settings = TopicSettings(event_retention_days=20)
    specs = {spec.name: spec for spec in standard_topics(settings)}
    posts = specs["feedrank.posts"].new_topic().config
    users = specs["feedrank.users"].new_topic().config
    assert posts is not None
    assert users is not None
    assert posts["min.compaction.lag.ms"] == str(20 * DAY_MS)  # compact decisions re-join
    assert posts["min.compaction.lag.ms"] == str(specs["feedrank.decisions"].retention_ms)
    assert users["min.compaction.lag.ms"] == "0"
