"""CRI log files read as `kubectl logs` shows them: partial lines joined, tail, since,
timestamps, limitBytes, and follow ending with the container."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pinnace.agent.logs import LogOptions, format_timestamp, parse_timestamp, read_log

LOG = (b"2024-05-01T10:00:00.100000000Z stdout F one\n"
       b"2024-05-01T10:00:01.000000000Z stderr F two\n"
       b"2024-05-01T10:00:02.123456789Z stdout P thr\n"
       b"2024-05-01T10:00:02.200000000Z stdout F ee\n"
       b"2024-05-01T10:00:03.000000000Z stdout F \n")


class Follower:
    """`kubectl logs -f` of a container that runs until `running` is set False."""

    def __init__(self, path: Path) -> None:
        self.running = True
        self.got: list[bytes] = []
        self.task = asyncio.create_task(self._follow(path))

    async def _still_running(self) -> bool:
        return self.running

    async def _follow(self, path: Path) -> None:
        async for chunk in read_log(path, LogOptions(follow=True), self._still_running):
            self.got.append(chunk)


async def read(path: Path, **opts: object) -> bytes:
    return b"".join([c async for c in read_log(path, LogOptions(**opts))])  # type: ignore[arg-type]


async def test_whole_log_joins_partial_lines(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(LOG)
    assert await read(tmp_path / "log") == b"one\ntwo\nthree\n\n"


async def test_tail_since_timestamps_limit(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(LOG)
    assert await read(path, tail_lines=2) == b"three\n\n"
    assert await read(path, tail_lines=0) == b""
    assert await read(path, since=parse_timestamp("2024-05-01T10:00:01Z")) == \
        b"two\nthree\n\n"
    assert (await read(path, timestamps=True)).splitlines()[:3] == [
        b"2024-05-01T10:00:00.1Z one", b"2024-05-01T10:00:01Z two",
        b"2024-05-01T10:00:02.123456789Z three"]
    assert await read(path, limit_bytes=6) == b"one\ntw"
    assert await read(tmp_path / "missing") == b""


def test_timestamps_like_go() -> None:
    assert format_timestamp("2024-05-01T10:00:00.000000000Z") == "2024-05-01T10:00:00Z"
    # conmon's records carry an offset; a zero one is Go's `Z`, others stay
    assert format_timestamp("2024-05-01T10:00:00.120000000+00:00") == \
        "2024-05-01T10:00:00.12Z"
    assert format_timestamp("2024-05-01T10:00:00.000000000+02:00") == \
        "2024-05-01T10:00:00+02:00"
    assert parse_timestamp("2024-05-01T10:00:00.5Z") - \
        parse_timestamp("2024-05-01T10:00:00Z") == 0.5


async def test_follow_until_the_container_exits(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"2024-05-01T10:00:00Z stdout F first\n")
    follower = Follower(path)
    got = follower.got
    await asyncio.sleep(0.3)
    assert got == [b"first\n"]
    with path.open("ab") as f:
        f.write(b"2024-05-01T10:00:01Z stdout P sec")
        f.flush()
        await asyncio.sleep(0.3)
        assert got == [b"first\n"]  # half a line is not shown yet
        f.write(b"\n2024-05-01T10:00:01Z stdout F ond\n")
    follower.running = False  # the container exited: what was written is still delivered
    await asyncio.wait_for(follower.task, 2)
    assert b"".join(got) == b"first\nsecond\n"


async def test_follow_shows_a_line_still_waiting_for_its_newline(tmp_path: Path) -> None:
    # `cat log_level` printing "debug" with no newline: the monitor logs it as a partial
    # record once the writer pauses, and a follower sees it while the container runs
    path = tmp_path / "log"
    path.write_bytes(b"2024-05-01T10:00:00Z stdout F The app is running!\n"
                     b"2024-05-01T10:00:01Z stdout P debug\n")
    follower = Follower(path)
    got = follower.got
    await asyncio.sleep(0.3)
    assert b"".join(got) == b"The app is running!\ndebug"
    with path.open("ab") as f:
        f.write(b"2024-05-01T10:00:02Z stdout F !\n")
    follower.running = False
    await asyncio.wait_for(follower.task, 2)
    assert b"".join(got) == b"The app is running!\ndebug!\n"
    assert await read(path) == b"The app is running!\ndebug!\n"
