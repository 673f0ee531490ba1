"""Bearer tokens: read from gRPC metadata, compared whole, fresh each time."""

from __future__ import annotations

from feedrank.core.bearer_tokens import bearer, bearer_metadata, new_token, same_secret


def test_bearer_reads_the_authorization_metadata() -> None:
    assert bearer([("authorization", "Bearer abc")]) == "abc"
    assert bearer([("Authorization", b"bearer  xyz ")]) == "xyz"
    assert bearer([("authorization", "Basic abc")]) is None
    assert bearer([("authorization", "Bearer ")]) is None
    assert bearer(None) is None
    assert bearer(bearer_metadata("k1")) == "k1"
    assert bearer_metadata(None) == ()


def test_secrets_compare_whole_and_tokens_are_fresh() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("abc", None)
    first, second = new_token(), new_token()
    assert first != second
    assert len(first) >= 40
