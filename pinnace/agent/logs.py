"""Reading CRI-format container logs the way the kubelet serves them to `kubectl logs`.

A log file holds one record per line: `<RFC3339Nano> <stdout|stderr> <F|P> <text>`;
`P` marks a partial line (a long one cut by the writer) that the next record
continues, `F` ends a line. `read_log` joins partial records into whole lines,
then applies the options in the kubelet's order: `since` (drop older lines),
`tail` (keep the last N), `timestamps` (prefix `<RFC3339Nano> `) and
`limit_bytes` (stop after that many bytes of output).

Follow: after the existing lines, poll the file every `POLL_INTERVAL` for new
records until the container has exited (asked through `still_running`) and the
file is drained. A restarted container writes a new file, so following one
container ends with that container.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pinnace.api.timestamps import to_epoch

POLL_INTERVAL = 0.15
_CHUNK = 65536
_RECORD = re.compile(rb"^(\S+) (stdout|stderr) (F|P) ?(.*)$", re.DOTALL)


@dataclass(frozen=True)
class LogOptions:
    """kubectl logs' options as the kubelet receives them (PodLogOptions)."""

    follow: bool = False
    tail_lines: int | None = None  # None: all
    since: float | None = None  # wall-clock seconds; lines older than this are skipped
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    timestamp: str  # as written: RFC 3339 with nanoseconds
    stream: str  # stdout | stderr
    text: bytes  # with its newline (a final partial record may lack one)


def parse_timestamp(text: str) -> float:
    """RFC 3339 (any fraction; nanoseconds kept to the microsecond) to wall-clock seconds;
    ValueError for anything else (a bad `sinceTime` is the client's error)."""
    seconds = to_epoch(text)
    if seconds is None:
        raise ValueError(f"invalid timestamp {text!r}")
    return seconds


def format_timestamp(stamp: str) -> str:
    """Go's RFC3339Nano output, which drops trailing zeros of the fraction and writes a
    zero offset as `Z` (conmon writes `+00:00`, the Python monitor `Z`)."""
    base, dot, rest = stamp.partition(".")
    if not dot:
        return stamp
    frac = rest.rstrip("Z")
    frac = frac[:len(frac) - 6] if frac[-6:-5] in ("+", "-") else frac
    zone = rest[len(frac):]
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    frac = frac.rstrip("0")
    return f"{base}.{frac}{zone}" if frac else f"{base}{zone}"


class LineJoiner:
    """Turns raw log bytes (fed in any pieces) into whole `LogLine`s."""

    def __init__(self) -> None:
        self._buffer = b""
        self._partial: list[bytes] = []
        self._first_stamp = ""
        self._stream = ""

    def feed(self, data: bytes) -> list[LogLine]:
        self._buffer += data
        *records, self._buffer = self._buffer.split(b"\n")
        out = []
        for record in records:
            m = _RECORD.match(record)
            if m is None:
                continue  # not a CRI record (a torn write): skip it as the kubelet does
            stamp, stream, kind, text = m.groups()
            if not self._partial:
                self._first_stamp, self._stream = stamp.decode(), stream.decode()
            self._partial.append(text)
            if kind == b"F":
                out.append(LogLine(self._first_stamp, self._stream,
                                   b"".join(self._partial) + b"\n"))
                self._partial = []
        return out

    def flush(self) -> list[LogLine]:
        """At the end of a finished log: a last partial line, without a newline."""
        if not self._partial:
            return []
        line = LogLine(self._first_stamp, self._stream, b"".join(self._partial))
        self._partial = []
        return [line]


def render(line: LogLine, timestamps: bool) -> bytes:
    if timestamps:
        return format_timestamp(line.timestamp).encode() + b" " + line.text
    return line.text


async def read_log(path: Path, opts: LogOptions,
                   still_running: Callable[[], Awaitable[bool]] | None = None,
                   ) -> AsyncIterator[bytes]:
    """The log at `path` as kubectl shows it, in chunks; with `opts.follow`, keeps going
    until `still_running()` says no and everything written has been read."""
    joiner = LineJoiner()
    budget = opts.limit_bytes if opts.limit_bytes and opts.limit_bytes > 0 else None

    def admit(lines: list[LogLine]) -> list[LogLine]:
        if opts.since is None:
            return lines
        return [ln for ln in lines if parse_timestamp(ln.timestamp) >= opts.since]

    def clip(data: bytes) -> tuple[bytes, bool]:
        nonlocal budget
        if budget is None:
            return data, False
        data = data[:budget]
        budget -= len(data)
        return data, budget <= 0

    try:
        # a local file: reads return at once, no thread needed
        f = open(path, "rb")  # noqa: ASYNC230
    except FileNotFoundError:
        return
    try:
        # the lines there now: tail applies to them
        tail: deque[LogLine] | list[LogLine] = \
            deque(maxlen=opts.tail_lines) if opts.tail_lines is not None else []
        while chunk := f.read(_CHUNK):
            tail.extend(admit(joiner.feed(chunk)))
        # a line still without its newline is shown as it stands (the kubelet prints each
        # record as it comes); its rest follows when written
        tail.extend(admit(joiner.flush()))
        if opts.tail_lines == 0:
            tail.clear()
        out = b"".join(render(ln, opts.timestamps) for ln in tail)
        out, done = clip(out)
        if out:
            yield out
        if done or not opts.follow:
            return
        while True:
            # ask before reading, so that lines written just before the exit are not lost
            running = still_running is not None and await still_running()
            chunk = f.read(_CHUNK)
            while chunk:
                lines = admit(joiner.feed(chunk))
                data, done = clip(b"".join(render(ln, opts.timestamps) for ln in lines))
                if data:
                    yield data
                if done:
                    return
                chunk = f.read(_CHUNK)
            if running:
                data, done = clip(b"".join(render(ln, opts.timestamps)
                                           for ln in admit(joiner.flush())))
                if data:
                    yield data
                if done:
                    return
            if not running:
                data, _ = clip(b"".join(render(ln, opts.timestamps)
                                        for ln in admit(joiner.flush())))
                if data:
                    yield data
                return
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        f.close()
