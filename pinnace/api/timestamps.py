"""RFC 3339 timestamps and Go-style durations, the way Kubernetes writes them.

Kubernetes has two time types on the wire: `Time` (seconds, `2026-12-02T10:00:00Z`) for
creationTimestamp, conditions and most status fields, and `MicroTime` (microseconds,
`2026-12-02T10:00:00.123456Z`) for Leases and events.k8s.io series. Parsing accepts
both, any fractional precision and any UTC offset, because clients send all of them.
Every module formats and parses through here so that there is one notion of "now" on
the wire and one tolerant parser.
"""

from __future__ import annotations

import datetime as dt
import re
import time

_TIME = "%Y-%m-%dT%H:%M:%SZ"
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"

Moment = float | dt.datetime


def _as_datetime(t: Moment | None) -> dt.datetime:
    if t is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(t, dt.datetime):
        return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(t, dt.UTC)


def format_time(t: Moment | None = None) -> str:
    """A metav1.Time: whole seconds in UTC; `t` is epoch seconds or a datetime (naive
    ones are taken as UTC); None is now."""
    return _as_datetime(t).strftime(_TIME)


def format_micro_time(t: Moment | None = None) -> str:
    """A metav1.MicroTime: microseconds in UTC."""
    return _as_datetime(t).strftime(_MICRO_TIME)


def now_rfc3339() -> str:
    return format_time(time.time())


def parse_time(text: str | None) -> dt.datetime | None:
    """An aware datetime for an RFC 3339 text; None for None, "" or text that is not a
    timestamp (a stored object from an old writer must not stop a controller)."""
    if not text or not isinstance(text, str):
        return None
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def to_epoch(text: str | None) -> float | None:
    """Epoch seconds for an RFC 3339 text, or None (see parse_time)."""
    parsed = parse_time(text)
    return parsed.timestamp() if parsed is not None else None


def after(text: str, seconds: float) -> str:
    """The Time `seconds` after the timestamp `text` (deletion deadlines)."""
    base = parse_time(text) or _as_datetime(None)
    return format_time(base + dt.timedelta(seconds=seconds))


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() prints it, which is what Kubernetes puts
    in messages: 0s, 400ms, 2.5s, 10s, 5m0s, 1h0m0s, 1h30m5s."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        ms = seconds * 1000
        if ms >= 1:
            return f"{sign}{ms:.6f}".rstrip("0").rstrip(".") + "ms"
        return f"{sign}{seconds * 1_000_000:.3f}".rstrip("0").rstrip(".") + "µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds for a Go duration, as time.ParseDuration reads it ("10s", "1m30s", "1.5h",
    "300ms", "-1s", a bare "0"); ValueError otherwise. Used for `@every <duration>`
    schedules and the fake runtime's exit-after annotation."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    if s[:1] in ("+", "-"):
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total
