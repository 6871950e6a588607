"""The token bucket: a burst, then the rate; the caller's clock, no loop."""

from __future__ import annotations

from app.feed.bucket import TokenBucket


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False  # half a token back
    assert bucket.take(0.1) is True


def test_refill_and_spend_split_take_for_a_hot_path() -> None:
    bucket = TokenBucket(rate=100, burst=2)
    bucket.refill(0.0)  # the first refill only starts the clock
    assert [bucket.spend() for _ in range(3)] == [True, True, False]
    bucket.refill(0.015)  # 1.5 tokens earned: one whole
    assert [bucket.spend() for _ in range(2)] == [True, False]
    bucket.refill(10.0)  # a long quiet spell earns no more than the burst
    assert [bucket.spend() for _ in range(3)] == [True, True, False]
