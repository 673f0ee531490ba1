from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.core.settings import load_settings
from feedrank.streaming import join_jar


def test_the_jar_is_named_by_a_digest_of_its_sources_and_versions(tmp_path: Path) -> None:
    settings = load_settings(paths={"jar_cache": tmp_path})
    path = join_jar.join_jar_path(settings)
    assert path.parent == tmp_path / "feedrank"
    assert path.name == f"feedrank-join-{join_jar.source_digest(join_jar.flink_version())}.jar"
    assert join_jar.source_digest("2.2.1") == join_jar.source_digest("2.2.1")
    assert join_jar.source_digest("2.2.1") != join_jar.source_digest("2.3.0")


def test_a_changed_source_names_a_new_jar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "engine"
    sources.mkdir()
    (sources / "A.java").write_text("class A {}")
    monkeypatch.setattr(join_jar, "JAVA_SOURCES", sources)
    before = join_jar.source_digest("2.2.1")
    (sources / "A.java").write_text("class A { int x; }")
    assert join_jar.source_digest("2.2.1") != before


def test_the_engine_sources_are_found() -> None:
    names = {path.name for path in join_jar.java_sources()}
    assert {"JoinLogic.java", "LabelState.java", "DecisionRewardJoin.java"} <= names


def test_a_missing_jar_says_how_to_build_it(tmp_path: Path) -> None:
    settings = load_settings(paths={"jar_cache": tmp_path})
    with pytest.raises(join_jar.MissingJoinJarError, match="feedrank setup"):
        join_jar.require_join_jar(settings)
