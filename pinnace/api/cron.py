"""The cron grammar of CronJob schedules, parsed once: validation and the controller
both use `parse`.

Kubernetes parses `spec.schedule` with robfig/cron v3's standard parser; this module
follows its semantics:

- five fields: minute, hour, day of month, month, day of week; each a list of
  `*`/`?`, `a`, `a-b`, with an optional `/step` (`a/step` runs from a to the field's
  maximum); month and day names (`jan`, `MON`) in any case; day of week 0-6 with 7
  accepted as Sunday, as Vixie cron does;
- when both day fields are restricted either one matching is enough; when one of them
  is `*` or `?` (without a step above 1) both must match;
- descriptors, case-sensitive as robfig's: `@yearly`/`@annually`, `@monthly`,
  `@weekly`, `@daily`/`@midnight`, `@hourly`, and `@every <Go duration>`;
- a `TZ=<zone>` or `CRON_TZ=<zone>` prefix names the zone the fields are read in.

`@every d` is a constant delay, not a wall-clock pattern: the next run is `d` after
the given time truncated to the second, `d` truncated to whole seconds and at least
one second (robfig's ConstantDelaySchedule). The CronJob controller anchors it at the
last scheduled time (or the CronJob's creation), as Kubernetes does.

Pure: no clock; every function takes the times it works on.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass
from typing import Protocol

from pinnace.api.timestamps import parse_go_duration

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_EVERY = "@every "
_MONTHS = {n: i for i, n in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
# (low, high, names) per field: minute, hour, day of month, month, day of week
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 7, _DAYS))
# robfig gives up after five years without a match
_HORIZON = dt.timedelta(days=366 * 5)


class Schedule(Protocol):
    """A parsed schedule: the zone it is read in and its next run."""

    tz: dt.tzinfo

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first run strictly after the aware datetime t, in UTC; ValueError if the
        schedule never fires (`0 0 30 feb *`)."""
        ...


@dataclass(frozen=True)
class CronSchedule:
    """Five cron fields as sets of allowed values."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool  # day of month unrestricted (then both day fields must match)
    weekday_star: bool
    tz: dt.tzinfo

    def next_after(self, t: dt.datetime) -> dt.datetime:
        local = t.astimezone(self.tz).replace(second=0, microsecond=0, tzinfo=None)
        local += dt.timedelta(minutes=1)
        limit = local + _HORIZON
        while local < limit:
            if local.month not in self.months:
                local = (local.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)
                         ).replace(day=1)
                continue
            if not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += dt.timedelta(minutes=1)
                continue
            aware = local.replace(tzinfo=self.tz)
            # a wall time skipped by a DST jump does not exist: move on
            if aware.astimezone(dt.UTC).astimezone(self.tz).replace(tzinfo=None) != local:
                local += dt.timedelta(minutes=1)
                continue
            return aware.astimezone(dt.UTC)
        raise ValueError("schedule never fires")

    def _day_matches(self, d: dt.datetime) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


@dataclass(frozen=True)
class EverySchedule:
    """`@every <duration>`: a constant delay in whole seconds."""

    seconds: int
    tz: dt.tzinfo = dt.UTC

    def next_after(self, t: dt.datetime) -> dt.datetime:
        return (t.astimezone(dt.UTC).replace(microsecond=0)
                + dt.timedelta(seconds=self.seconds))


def parse(text: str, time_zone: str | None = None) -> CronSchedule | EverySchedule:
    """The schedule `text` means, read in `time_zone` unless the text names its own zone
    with a `TZ=`/`CRON_TZ=` prefix (UTC if neither). ValueError says what is wrong."""
    text = text.strip()
    zone = time_zone
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        zone = prefix.split("=", 1)[1]
        text = text.strip()
    tz = _zone(zone)
    if text.startswith(_EVERY):
        return _every(text[len(_EVERY):], tz)
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ValueError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
    sets, stars = [], []
    for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True):
        values, star = _field(f, lo, hi, names)
        sets.append(values)
        stars.append(star)
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return CronSchedule(sets[0], sets[1], sets[2], sets[3], weekdays, stars[2], stars[4], tz)


def most_recent(schedule: CronSchedule | EverySchedule, start: dt.datetime,
                now: dt.datetime, *, walk_limit: int = 100) -> tuple[dt.datetime | None, int]:
    """The latest run in (start, now] and how many runs fell in that window (exact up to
    walk_limit, then at least walk_limit + 1). None if there was none."""
    first = schedule.next_after(start)
    if first > now:
        return None, 0
    if isinstance(schedule, EverySchedule):
        # a constant delay from `first`: arithmetic, however long the window
        runs = math.floor((now - first).total_seconds() / schedule.seconds) + 1
        return first + dt.timedelta(seconds=schedule.seconds * (runs - 1)), runs
    latest, count, t = first, 1, first
    while (t := schedule.next_after(t)) <= now:
        latest, count = t, count + 1
        if count > walk_limit:  # too many to walk: find the last one from now backwards
            return _last_before(schedule, now), count
    return latest, count


def _last_before(schedule: CronSchedule, now: dt.datetime) -> dt.datetime | None:
    """The latest run ≤ now: widen a window back from now until it holds one, then walk
    that (short) window forward."""
    window = dt.timedelta(minutes=1)
    while window < _HORIZON:
        t = schedule.next_after(now - window)
        if t <= now:
            latest = t
            while (t := schedule.next_after(t)) <= now:
                latest = t
            return latest
        window *= 2
    return None


def _zone(name: str | None) -> dt.tzinfo:
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"provided bad location {name}: unknown time zone") from e


def _every(text: str, tz: dt.tzinfo) -> EverySchedule:
    try:
        seconds = parse_go_duration(text)
    except ValueError as e:
        raise ValueError(f"failed to parse duration {text}: {e}") from e
    # robfig: below a second runs every second; fractions of a second are dropped
    return EverySchedule(max(int(seconds), 1), tz)


def _field(text: str, lo: int, hi: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values of one field, and whether it counts as unrestricted (`*`/`?` with no
    step above 1 in one of its parts), which decides how the day fields combine."""
    out: set[int] = set()
    star = False
    for part in text.split(","):
        rng, slash, step_text = part.partition("/")
        step = _number(step_text, part) if slash else 1
        if step <= 0:
            raise ValueError(f"step of range should be a positive number: {part!r}")
        if rng in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            a, dash, b = rng.partition("-")
            start = _value(a, names)
            end = _value(b, names) if dash else (hi if slash else start)
        if start < lo:
            raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {part!r}")
        if end > hi:
            raise ValueError(f"end of range ({end}) above maximum ({hi}): {part!r}")
        if start > end:
            raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): "
                             f"{part!r}")
        out.update(range(start, end + 1, step))
    return frozenset(out), star


def _value(text: str, names: dict[str, int]) -> int:
    low = text.lower()
    if low in names:
        return names[low]
    return _number(text, text)


def _number(text: str, part: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"failed to parse int from {text!r} in {part!r}")
    return int(text)
