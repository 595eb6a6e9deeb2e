"""The event correlator (client-go's events_cache semantics) on a clock the test moves:
deduplication into count bumps, aggregation of similar events, the spam filter, and
bounded caches."""

from __future__ import annotations

from typing import Any

from pinnace.api.events import event_for
from pinnace.api.timestamps import format_time
from pinnace.client.events import CACHE_SIZE, COMBINED, LRU, EventCorrelator

T0 = 1_700_000_000.0
POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}


def event(now: float, *, reason: str = "BackOff", message: str = "Back-off restarting",
          obj: dict[str, Any] = POD, component: str = "kubelet", field_path: str = "",
          type_: str = "Warning") -> dict[str, Any]:
    return event_for(obj, component=component, type_=type_, reason=reason, message=message,
                     now=format_time(now), field_path=field_path, host="node-1")


def test_identical_events_become_one_with_a_count() -> None:
    c = EventCorrelator()
    first = c.correlate(event(T0), T0)
    assert first is not None and first.patch is None and first.event["count"] == 1
    name = first.event["metadata"]["name"]
    for i in range(2, 6):
        now = T0 + 10 * i
        out = c.correlate(event(now), now)
        assert out is not None
        assert out.event["metadata"]["name"] == name
        assert out.event["count"] == i
        assert out.event["firstTimestamp"] == format_time(T0)
        assert out.patch == {"count": i, "lastTimestamp": format_time(now),
                             "message": "Back-off restarting"}


def test_what_makes_events_different() -> None:
    c = EventCorrelator()
    base = c.correlate(event(T0), T0)
    assert base is not None
    others = [event(T0, message="other"), event(T0, reason="Failed"),
              event(T0, field_path="spec.containers{app}"), event(T0, component="other"),
              event(T0, type_="Normal"),
              event(T0, obj={**POD, "metadata": {**POD["metadata"], "uid": "u2"}})]
    for e in others:
        out = c.correlate(e, T0)
        assert out is not None and out.patch is None, e
        assert out.event["metadata"]["name"] != base.event["metadata"]["name"]


def test_similar_events_are_combined_from_the_tenth_message() -> None:
    c = EventCorrelator()
    names = set()
    for i in range(9):
        out = c.correlate(event(T0 + i, message=f"failed {i}"), T0 + i)
        assert out is not None and out.patch is None
        assert out.event["message"] == f"failed {i}"
        names.add(out.event["metadata"]["name"])
    tenth = c.correlate(event(T0 + 9, message="failed 9"), T0 + 9)
    assert tenth is not None and tenth.patch is None
    assert tenth.event["message"] == COMBINED + "failed 9"
    assert tenth.event["metadata"]["name"] not in names
    # every later similar message bumps the combined Event
    later = c.correlate(event(T0 + 20, message="failed 42"), T0 + 20)
    assert later is not None
    assert later.event["metadata"]["name"] == tenth.event["metadata"]["name"]
    assert later.patch == {"count": 2, "lastTimestamp": format_time(T0 + 20),
                           "message": COMBINED + "failed 42"}


def test_similar_events_are_counted_within_ten_minutes() -> None:
    c = EventCorrelator()
    for i in range(9):
        assert c.correlate(event(T0 + i, message=f"m{i}"), T0 + i) is not None
    # the window passed without a similar event: counting starts again
    now = T0 + 8 + 601
    out = c.correlate(event(now, message="m9"), now)
    assert out is not None and out.event["message"] == "m9"


def test_spam_filter_bursts_25_then_refills_one_per_five_minutes() -> None:
    c = EventCorrelator()
    passed = [c.correlate(event(T0, message=f"m{i}", reason=f"R{i}"), T0) for i in range(30)]
    assert sum(p is not None for p in passed) == 25
    # repeats of an event already written are rate limited as well
    assert c.correlate(event(T0, message="m0", reason="R0"), T0) is None
    assert c.correlate(event(T0 + 299, message="new", reason="New"), T0 + 299) is None
    assert c.correlate(event(T0 + 301, message="new", reason="New"), T0 + 301) is not None
    assert c.correlate(event(T0 + 302, message="new2", reason="New2"), T0 + 302) is None
    # another object has its own bucket
    other = {**POD, "metadata": {**POD["metadata"], "name": "db", "uid": "u9"}}
    assert c.correlate(event(T0, obj=other), T0) is not None


def test_caches_are_bounded() -> None:
    c = EventCorrelator()
    for i in range(CACHE_SIZE + 10):
        obj = {**POD, "metadata": {**POD["metadata"], "name": f"p{i}", "uid": f"u{i}"}}
        assert c.correlate(event(T0, obj=obj), T0) is not None
    assert len(c._observed) == len(c._similar) == len(c._buckets) == CACHE_SIZE
    # the oldest object was forgotten: its repeat is a new Event again
    first = {**POD, "metadata": {**POD["metadata"], "name": "p0", "uid": "u0"}}
    again = c.correlate(event(T0, obj=first), T0)
    assert again is not None and again.patch is None


def test_lru_forgets_the_least_recently_used() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
