"""Controller expectations: counts, uid-tracked deletions, the TTL on an injected clock."""

from __future__ import annotations

from pinnace.controllers._expectations import Expectations
from tests.unit.controllers.objects import FakeClock


def test_no_expectations_are_satisfied(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    assert exp.satisfied("ns/rs")
    assert exp.pending_deletions("ns/rs") == frozenset()


def test_creations_are_met_once_each_one_was_observed(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_creations("ns/rs", 3)
    exp.creation_observed("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")


def test_failed_creations_lower_the_count_at_once(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_creations("k", 4)
    exp.creation_observed("k", 4)  # a slow-start batch failed: the rest never come
    assert exp.satisfied("k")


def test_extra_observations_do_not_carry_over(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_creations("k", 1)
    for _ in range(3):  # a relist shows the same pods again
        exp.creation_observed("k")
    exp.expect_creations("k", 2)
    exp.creation_observed("k")
    assert not exp.satisfied("k")


def test_deletions_are_tracked_by_uid(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_deletions("k", ["a", "b"])
    assert exp.pending_deletions("k") == {"a", "b"}
    exp.deletion_observed("k", "a")
    exp.deletion_observed("k", "a")  # a second event for the same pod counts once
    exp.deletion_observed("k", "zzz")  # someone else's pod
    assert not exp.satisfied("k")
    exp.deletion_observed("k", "b")
    assert exp.satisfied("k")


def test_creations_and_deletions_of_one_reconcile_add_up(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_deletions("k", ["old"])
    exp.expect_creations("k", 1)
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    assert exp.pending_deletions("k") == {"old"}
    exp.deletion_observed("k", "old")
    assert exp.satisfied("k")


def test_keys_are_independent(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_creations("a", 1)
    assert exp.satisfied("b")
    exp.creation_observed("b")
    assert not exp.satisfied("a")


def test_unmet_expectations_expire_after_the_ttl(clock: FakeClock) -> None:
    exp = Expectations(ttl=300.0, clock=clock)
    exp.expect_creations("k", 1)
    exp.expect_deletions("k", ["x"])
    clock.advance(299.0)
    assert not exp.satisfied("k")
    clock.advance(2.0)
    assert exp.satisfied("k")
    assert exp.pending_deletions("k") == frozenset()


def test_raising_again_restarts_the_ttl_and_an_expired_one_starts_afresh(
        clock: FakeClock) -> None:
    exp = Expectations(ttl=10.0, clock=clock)
    exp.expect_creations("k", 1)
    clock.advance(8.0)
    exp.expect_creations("k", 1)  # a later batch: counted from now
    clock.advance(8.0)
    assert not exp.satisfied("k")
    clock.advance(3.0)
    assert exp.satisfied("k")
    exp.expect_creations("k", 1)  # the expired two are forgotten, not added to
    exp.creation_observed("k")
    assert exp.satisfied("k")


def test_forget_drops_the_key(clock: FakeClock) -> None:
    exp = Expectations(clock=clock)
    exp.expect_creations("k", 5)
    exp.forget("k")
    assert exp.satisfied("k")
    exp.creation_observed("k")  # events after the owner is gone are ignored
    assert exp.satisfied("k")
