"""The shared back-off arithmetic and condition rules."""

from __future__ import annotations

from pinnace.api import conditions
from pinnace.api.backoff import Backoff, exponential_delay


def test_delay_doubles_up_to_the_cap() -> None:
    assert [exponential_delay(10, 300, n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert exponential_delay(0.005, 1000, 10_000) == 1000  # no overflow after many failures


def test_backoff_entry_tracks_failures_on_the_callers_clock() -> None:
    b = Backoff(base=1, cap=4)
    assert b.fail(now=100) == 1 and b.remaining(100.5) == 0.5
    assert b.fail(now=101) == 2
    assert b.fail(now=103) == 4 and b.fail(now=107) == 4
    assert b.remaining(200) == 0
    b.reset()
    assert b.failures == 0 and b.delay == 0


def test_transition_time_moves_only_with_status() -> None:
    first = conditions.new_condition("Ready", "False", "Starting", now="2026-12-02T10:00:00Z")
    same = conditions.new_condition("Ready", "False", "StillStarting", "slow",
                                    now="2026-12-02T10:05:00Z", previous=first)
    assert same["lastTransitionTime"] == "2026-12-02T10:00:00Z"
    assert same["reason"] == "StillStarting" and same["message"] == "slow"
    flipped = conditions.new_condition("Ready", "True", now="2026-12-02T10:06:00Z",
                                       previous=same, extra_times=("lastProbeTime",))
    assert flipped == {"type": "Ready", "status": "True", "lastProbeTime": "2026-12-02T10:06:00Z",
                       "lastTransitionTime": "2026-12-02T10:06:00Z"}


def test_find_set_and_remove() -> None:
    status = {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}
    assert conditions.is_true(status["conditions"], "A")
    assert not conditions.is_true(status["conditions"], "B")
    assert not conditions.is_true(None, "A")
    assert conditions.get_condition(status, "B") == {"type": "B", "status": "False"}
    conditions.remove_condition(status, "A")
    conditions.remove_condition(status, "B")
    assert "conditions" not in status


def test_same_status_ignores_omitted_zeroes() -> None:
    assert conditions.same_status({"replicas": 0, "ready": 2}, {"ready": 2})
    assert not conditions.same_status({"ready": 1}, {"ready": 2})
