"""Watch streaming: newline-delimited `{"type", "object"}` events over chunked HTTP.

A watch starts from the query's resourceVersion ("" or "0": the current state as
ADDED events first; otherwise the history after it), then follows live events
until `timeoutSeconds` (default: a random 30 to 60 minutes, as Kubernetes does), the
client goes away or its queue overflows. A resourceVersion older than the cache
window is answered, like Kubernetes, with an ERROR event carrying a 410 Status.
Bookmarks (when asked for) carry the cache's revision and go out after
BOOKMARK_INTERVAL without events. An idle watch checks every DISCONNECT_POLL
seconds whether its client left, so abandoned watches do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from aiohttp import web

from pinnace.api import errors, tables
from pinnace.api.kinds import ResourceType
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver.watch_cache import CacheEvent, WatchCache, WatchFilter
from pinnace.store.interface import CompactedError

BOOKMARK_INTERVAL = 10.0
# how often an idle watch checks that its client is still connected
DISCONNECT_POLL = 0.5
MIN_REQUEST_TIMEOUT = 1800


def _disconnected(request: web.Request) -> bool:
    """The client went away: aiohttp does not cancel the handler (handler_cancellation
    is off), so an idle watch notices only by looking at its transport."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _parse_rv(value: str | None) -> int | None:
    if value in (None, "", "0"):
        return None
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {value!r}") from None
    if rv < 0:
        raise errors.bad_request(f"invalid resource version: {value!r}")
    return rv


async def serve_watch(request: web.Request, cache: WatchCache, rt: ResourceType,
                      namespace: str | None, matches: WatchFilter,
                      render: neg.Rendering) -> web.StreamResponse:
    q = request.query
    from_rv = _parse_rv(q.get("resourceVersion"))
    timeout = neg.query_int(q, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = int(MIN_REQUEST_TIMEOUT * (1 + random.random()))
    bookmarks = neg.query_bool(q.get("allowWatchBookmarks"))
    initial_events = neg.query_bool(q.get("sendInitialEvents")) if "sendInitialEvents" in q \
        else False
    if initial_events:
        from_rv = None
    try:
        watcher, backlog = cache.watch(namespace, matches, from_rv)
    except CompactedError:
        watcher, backlog = None, []
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    def frame(ev_type: str, obj: dict[str, Any]) -> bytes:
        if render.as_kind == "Table" and ev_type not in ("BOOKMARK", "ERROR"):
            obj = tables.table(rt.kind, rt.group, [obj], include_object=render.include_object,
                               resource_version=obj["metadata"].get("resourceVersion", ""))
        elif render.as_kind.startswith("PartialObjectMetadata") and ev_type != "ERROR":
            obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj.get("metadata", {})}
        return neg.dump({"type": ev_type, "object": obj}) + b"\n"

    if watcher is None:
        status = errors.gone(f"too old resource version: {from_rv} ({cache.window_start})")
        with contextlib.suppress(ConnectionError):
            await response.write(frame("ERROR", status.status()))
        return response

    def bookmark(initial_end: bool = False) -> bytes:
        m: dict[str, Any] = {"resourceVersion": str(cache.revision)}
        if initial_end:
            m["annotations"] = {"k8s.io/initial-events-end": "true"}
        return frame("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": m})

    deadline = time.monotonic() + timeout
    min_revision = from_rv or 0
    if backlog:
        min_revision = max(min_revision, max(ev.revision for ev in backlog))
    if from_rv is None:
        min_revision = max(min_revision, cache.revision)
    try:
        chunk = b"".join(frame(ev.type, ev.obj) for ev in backlog)
        if initial_events and bookmarks:
            chunk += bookmark(initial_end=True)
        if chunk:
            await response.write(chunk)
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                break
            wait = min(remaining, DISCONNECT_POLL)
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0))
            try:
                ev: CacheEvent | None = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if _disconnected(request):
                    break
                now = time.monotonic()
                if bookmarks and next_bookmark <= now < deadline:
                    await response.write(bookmark())
                    next_bookmark = now + BOOKMARK_INTERVAL
                continue
            if ev is None:
                break
            # drain what is queued so a burst goes out in one write
            batch = [ev]
            while not watcher.queue.empty():
                nxt = watcher.queue.get_nowait()
                if nxt is None:
                    watcher.closed = True
                    break
                batch.append(nxt)
            out = b"".join(frame(e.type, e.obj) for e in batch if e.revision > min_revision)
            if out:
                await response.write(out)
                next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            if watcher.closed and watcher.queue.empty():
                break
    except ConnectionError:
        pass
    finally:
        cache.unwatch(watcher)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
