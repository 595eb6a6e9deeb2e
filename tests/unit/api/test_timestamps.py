"""The one timestamp module: what Kubernetes puts on the wire, and a tolerant parser."""

from __future__ import annotations

import datetime as dt

import pytest

from pinnace.api import timestamps as ts


def test_time_is_whole_seconds_in_utc() -> None:
    assert ts.format_time(0) == "1970-01-01T00:00:00Z"
    assert ts.format_time(1.999) == "1970-01-01T00:00:01Z"
    plus_two = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert ts.format_time(plus_two) == "2026-12-02T10:00:00Z"
    assert ts.format_time(dt.datetime(2026, 12, 2, 10, 0)) == "2026-12-02T10:00:00Z"  # naive = UTC


def test_micro_time_keeps_microseconds() -> None:
    assert ts.format_micro_time(1.5) == "1970-01-01T00:00:01.500000Z"


@pytest.mark.parametrize("text, epoch", [
    ("2026-12-02T10:00:00Z", 1796205600.0),
    ("2026-12-02T10:00:00.250000Z", 1796205600.25),
    ("2026-12-02T12:00:00+02:00", 1796205600.0),
    ("2026-12-02T10:00:00z", 1796205600.0),
])
def test_parse_accepts_what_clients_send(text: str, epoch: float) -> None:
    assert ts.to_epoch(text) == epoch


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-13-40T99:00:00Z", 42])
def test_parse_of_garbage_is_none(text: object) -> None:
    assert ts.parse_time(text) is None  # type: ignore[arg-type]


def test_after_moves_a_deadline() -> None:
    assert ts.after("2026-12-02T10:00:00Z", 30) == "2026-12-02T10:00:30Z"
    assert ts.after("2026-12-02T10:00:30Z", -30) == "2026-12-02T10:00:00Z"


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.4, "400ms"), (0.0005, "500µs"), (2.5, "2.5s"), (10, "10s"), (60, "1m0s"),
    (300, "5m0s"), (90.5, "1m30.5s"), (3600, "1h0m0s"), (5405, "1h30m5s"), (-10, "-10s"),
])
def test_go_duration_prints_as_go_does(seconds: float, text: str) -> None:
    assert ts.go_duration(seconds) == text


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10), ("1m30s", 90), ("1.5h", 5400), ("300ms", 0.3), ("0", 0), ("2h45m", 9900),
    ("-1m", -60), ("+2s", 2), ("10us", 1e-5), (".5s", 0.5), ("1.s", 1),
])
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert ts.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1.5", "m5", "--1s", " ", "1s2", "1 s"])
def test_parse_go_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        ts.parse_go_duration(text)
