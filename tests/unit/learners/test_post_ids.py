"""The learner's post interner: any non-empty id, first seen first, rows never reused."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from feedrank.learners.post_ids import LEARNER_POST_IDS, PostIds


def test_ids_get_dense_rows_in_the_order_first_seen() -> None:
    post_ids = PostIds(["p0", "article-é-42"])
    assert post_ids.rows(["x", "p0", "x", "y" * 256]).tolist() == [2, 0, 2, 3]
    assert post_ids.intern("article-é-42") == 1
    assert len(post_ids) == 4
    assert post_ids.ids(np.array([3, 0, 1], dtype=np.int64)) == ["y" * 256, "p0", "article-é-42"]
    assert post_ids.ids([2]) == ["x"]
    assert post_ids.post_id(2) == "x"
    assert post_ids.post_row("x") == 2
    assert post_ids.post_row("never-seen") is None
    assert len(post_ids) == 4  # a lookup interns nothing


def test_empty_ids_and_unknown_rows_are_refused() -> None:
    post_ids = PostIds(["a"])
    with pytest.raises(ValueError, match="non-empty"):
        post_ids.intern("")
    with pytest.raises(IndexError):
        post_ids.ids([1])
    with pytest.raises(IndexError):
        post_ids.ids([-1])
    assert post_ids.rows([]).shape == (0,)


def test_concurrent_interning_hands_out_each_row_once() -> None:
    post_ids = PostIds()
    ids = [f"post-{number % 500}" for number in range(5_000)]

    def intern_all() -> None:
        post_ids.rows(ids)

    threads = [threading.Thread(target=intern_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(post_ids) == 500
    assert sorted(post_ids.rows(ids[:500]).tolist()) == list(range(500))


def test_the_process_shares_one_interner() -> None:
    assert isinstance(LEARNER_POST_IDS, PostIds)
