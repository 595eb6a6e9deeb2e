"""The cron grammar (pinnace.api.cron): fields, descriptors, @every, zones, and the
window arithmetic the CronJob controller runs on; plus the validation that uses it."""

from __future__ import annotations

import datetime as dt

import pytest

from pinnace.api import cron
from pinnace.api.field_errors import FieldErrors
from pinnace.api.validation_workloads import validate_cronjob

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(schedule: str, start: str, n: int, tz: str | None = None,
         fmt: str = "%Y-%m-%d %H:%M %a") -> list[str]:
    s = cron.parse(schedule, tz)
    out, t = [], at(start)
    for _ in range(n):
        t = s.next_after(t)
        out.append(t.strftime(fmt))
    return out


def test_fields_ranges_steps_lists_and_names() -> None:
    assert runs("* * * * *", "2024-03-01T10:00:30", 2) == ["2024-03-01 10:01 Fri",
                                                          "2024-03-01 10:02 Fri"]
    assert runs("*/15 9-10 * * *", "2024-03-01T10:40", 3) == [
        "2024-03-01 10:45 Fri", "2024-03-02 09:00 Sat", "2024-03-02 09:15 Sat"]
    assert runs("0 12 * * MON-FRI", "2024-03-01T13:00", 2) == [
        "2024-03-04 12:00 Mon", "2024-03-05 12:00 Tue"]
    assert runs("30 4 1,15 * *", "2024-02-10T00:00", 2) == [
        "2024-02-15 04:30 Thu", "2024-03-01 04:30 Fri"]
    assert runs("0 0 29 feb *", "2024-03-01T00:00", 1) == ["2028-02-29 00:00 Tue"]
    assert runs("0 0 * jan-mar/2 *", "2024-01-31T12:00", 1) == ["2024-03-01 00:00 Fri"]
    assert runs("0 0 * * 7", "2024-03-01T00:00", 1) == ["2024-03-03 00:00 Sun"]
    # a single value with a step runs to the field's end: 50/5 is 50,55
    assert runs("50/5 * * * *", "2024-03-01T10:00", 3) == [
        "2024-03-01 10:50 Fri", "2024-03-01 10:55 Fri", "2024-03-01 11:50 Fri"]
    assert runs("0 0 ? * sun", "2024-03-01T00:00", 1) == ["2024-03-03 00:00 Sun"]


def test_day_fields_combine_as_robfig_does() -> None:
    # both restricted: either matches (13th or any Friday)
    assert runs("0 0 13 * 5", "2024-09-01T00:00", 3) == [
        "2024-09-06 00:00 Fri", "2024-09-13 00:00 Fri", "2024-09-20 00:00 Fri"]
    # `*` in one of them: both must match (Fridays only)
    assert runs("0 0 * * 5", "2024-09-12T00:00", 1) == ["2024-09-13 00:00 Fri"]
    # `*/2` is a restriction, not a star: odd days or Fridays
    assert runs("0 0 */2 * 5", "2024-09-01T00:00", 3) == [
        "2024-09-03 00:00 Tue", "2024-09-05 00:00 Thu", "2024-09-06 00:00 Fri"]


def test_descriptors() -> None:
    assert runs("@hourly", "2024-03-01T10:59", 1) == ["2024-03-01 11:00 Fri"]
    assert runs("@daily", "2024-03-01T10:59", 1) == ["2024-03-02 00:00 Sat"]
    assert runs("@midnight", "2024-03-01T10:59", 1) == ["2024-03-02 00:00 Sat"]
    assert runs("@weekly", "2024-03-01T10:59", 1) == ["2024-03-03 00:00 Sun"]
    assert runs("@monthly", "2024-03-01T10:59", 1) == ["2024-04-01 00:00 Mon"]
    assert runs("@yearly", "2024-03-01T00:00", 1) == ["2025-01-01 00:00 Wed"]
    assert runs("@annually", "2024-03-01T00:00", 1) == ["2025-01-01 00:00 Wed"]


def test_every_is_a_constant_delay_on_whole_seconds() -> None:
    fmt = "%H:%M:%S"
    assert runs("@every 10s", "2024-03-01T10:00:03.700", 3, fmt=fmt) == [
        "10:00:13", "10:00:23", "10:00:33"]
    assert runs("@every 1m30s", "2024-03-01T10:00:00", 2, fmt=fmt) == ["10:01:30", "10:03:00"]
    assert runs("@every 1h", "2024-03-01T10:20:00", 1, fmt=fmt) == ["11:20:00"]
    # below a second is every second; fractions of a second are dropped
    assert cron.parse("@every 300ms") == cron.EverySchedule(1)
    assert cron.parse("@every 2.9s") == cron.EverySchedule(2)


def test_time_zones() -> None:
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer
    assert runs("0 9 * * *", "2024-03-30T12:00", 2, tz="Europe/Paris") == [
        "2024-03-31 07:00 Sun", "2024-04-01 07:00 Mon"]
    assert runs("TZ=Europe/Paris 0 9 * * *", "2024-01-10T12:00", 1) == [
        "2024-01-11 08:00 Thu"]
    assert runs("CRON_TZ=Europe/Paris @daily", "2024-01-10T12:00", 1) == [
        "2024-01-10 23:00 Wed"]
    # 02:30 does not exist in Paris on 2024-03-31 (clocks jump 02:00 → 03:00)
    assert runs("30 2 * * *", "2024-03-30T12:00", 1, tz="Europe/Paris") == [
        "2024-04-01 00:30 Mon"]


@pytest.mark.parametrize("bad", [
    "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "*/0 * * * *",
    "5-1 * * * *", "* * * foo *", "* * * * 8", "1-x * * * *", "*/a * * * *", "",
    "@often", "@HOURLY", "@every", "@every ten", "@every 10", "TZ=Mars/Olympus * * * * *",
    "@every 10s extra"])
def test_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        cron.parse(bad)


def test_rejects_unknown_zone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        cron.parse("* * * * *", "Mars/Olympus")


def test_never_firing_schedule_raises_on_next() -> None:
    s = cron.parse("0 0 30 feb *")
    with pytest.raises(ValueError, match="never fires"):
        s.next_after(at("2024-01-01T00:00"))


def test_most_recent_walks_cron_and_counts() -> None:
    s = cron.parse("*/10 * * * *")
    assert cron.most_recent(s, at("2024-03-01T10:00"), at("2024-03-01T10:05")) == (None, 0)
    assert cron.most_recent(s, at("2024-03-01T10:00"), at("2024-03-01T10:35")) == (
        at("2024-03-01T10:30"), 3)
    # more than the walk limit: the count says so, the time is still the latest
    latest, count = cron.most_recent(s, at("2024-03-01T00:00"), at("2024-03-03T10:35"),
                                     walk_limit=5)
    assert latest == at("2024-03-03T10:30") and count > 5


def test_most_recent_every_keeps_its_grid() -> None:
    s = cron.parse("@every 10s")
    start = at("2024-03-01T10:00:03")
    assert cron.most_recent(s, start, at("2024-03-01T10:00:12")) == (None, 0)
    assert cron.most_recent(s, start, at("2024-03-01T10:00:13")) == (
        at("2024-03-01T10:00:13"), 1)
    # a year of missed runs is arithmetic, not a walk, and stays on the grid
    latest, count = cron.most_recent(s, start, at("2025-03-01T10:00:00"))
    assert latest == at("2025-03-01T09:59:53") and count == 365 * 24 * 360 - 1


def errors_of(schedule: str) -> list[str]:
    errs = FieldErrors()
    validate_cronjob({"metadata": {"name": "c"}, "spec": {
        "schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}, errs)
    return [c.message for c in errs.causes if c.field == "spec.schedule"]


@pytest.mark.parametrize("good", ["@every 10s", "@hourly", "TZ=UTC 0 * * * *",
                                  "*/5 1-3 ? JAN-MAR mon,fri"])
def test_validation_accepts_what_the_controller_runs(good: str) -> None:
    assert errors_of(good) == []


def test_validation_refuses_with_the_parser_s_reason() -> None:
    (msg,) = errors_of("61 * * * *")
    assert "unparseable cron schedule" in msg and "above maximum (59)" in msg
