"""Events every component records (core/v1 Event), correlated as client-go's recorder
correlates them (tools/record/events_cache.go), so `kubectl describe` shows a repeated
event once, with its count ("x5 over 40s").

For each event, in this order (`EventCorrelator.correlate`, pure, time passed in):

- aggregation: events that differ only in their message (same source, object, type,
  reason, reporting controller and instance) are counted per distinct message; from
  the 10th distinct message within 10 minutes they become one Event whose message is
  "(combined from similar events): <latest message>";
- deduplication: an event identical to one already written (same source, involved
  object with its fieldPath, type, reason, message) is not a new object: the existing
  Event gets `count + 1`, a new `lastTimestamp` (and message), through a PATCH;
- spam filter: a token bucket per source and object, 25 events of burst, refilled one
  every 5 minutes; an event without a token is dropped (repeats count too).

Every cache is an LRU of 4096 entries, so a long-lived component's memory is bounded
whatever it reports on.

One `EventRecorder` per client (`recorder_for`, weakly keyed, so a client's recorder
goes with it) holds the correlator: every component that writes through the client
shares it, as components of one process share client-go's broadcaster. Writing is
best effort, as in client-go: an Event that cannot be written is logged and dropped,
never a reason to fail a reconcile. `emit` (and `record_event`) write in the caller's
task; `record` only stamps the time and queues, for callers that must never wait on an
Event (the scheduler): a few writer tasks, started on demand, correlate in queue order
and write.

A repeat PATCHes an Event the first write may not have created yet (two writes in
flight): a 404 falls back to creating it, a 409 on that create to the PATCH again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pinnace.api import errors
from pinnace.api.events import event_for
from pinnace.api.timestamps import format_time
from pinnace.api.types import Obj
from pinnace.client.client import Client

log = logging.getLogger(__name__)

CACHE_SIZE = 4096
SIMILAR_EVENTS = 10  # distinct messages before similar events are combined
SIMILAR_WINDOW = 600.0  # seconds
SPAM_BURST = 25
SPAM_REFILL = 300.0  # seconds per token
MAX_PENDING = 10_000  # queued by `record`; beyond this, shed load
WRITERS = 4  # background writer tasks of `record`, at most
COMBINED = "(combined from similar events): "

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A mapping that forgets its least recently used entry beyond `size` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Observed:
    name: str
    count: int
    first_timestamp: str


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass(frozen=True)
class Correlation:
    """What to write: `event` as a new object, or, when `patch` is set, that PATCH to
    the existing Event `event["metadata"]["name"]` (event is then its new state)."""

    event: Obj
    patch: Obj | None


def _source_and_object(e: Obj) -> tuple[Any, ...]:
    src, io = e.get("source") or {}, e.get("involvedObject") or {}
    return (src.get("component"), src.get("host"), io.get("kind"), io.get("namespace"),
            io.get("name"), io.get("uid"), io.get("apiVersion"))


def _identity(e: Obj) -> tuple[Any, ...]:
    """client-go's getEventKey: what makes two events the same event."""
    return (*_source_and_object(e), (e.get("involvedObject") or {}).get("fieldPath"),
            e.get("type"), e.get("reason"), e.get("message"))


def _similarity(e: Obj) -> tuple[Any, ...]:
    """client-go's EventAggregatorByReasonFunc: the same event but for its message."""
    return (*_source_and_object(e), e.get("type"), e.get("reason"),
            e.get("reportingComponent"), e.get("reportingInstance"))


class EventCorrelator:
    """Aggregation, deduplication and the spam filter over events about to be written.
    Pure but for its caches: `now` (epoch seconds) is passed in."""

    def __init__(self) -> None:
        self._similar: LRU[tuple[Any, ...], _Similar] = LRU(CACHE_SIZE)
        self._observed: LRU[tuple[Any, ...], _Observed] = LRU(CACHE_SIZE)
        self._buckets: LRU[tuple[Any, ...], _Bucket] = LRU(CACHE_SIZE)

    def correlate(self, event: Obj, now: float) -> Correlation | None:
        """The write for a new event (count 1, both timestamps now), or None if the
        spam filter drops it."""
        event, key = self._aggregate(event, now)
        observed = self._observed.get(key)
        patch: Obj | None = None
        if observed is not None:
            event = {**event, "metadata": {**event["metadata"], "name": observed.name},
                     "count": observed.count + 1, "firstTimestamp": observed.first_timestamp}
            patch = {"count": event["count"], "lastTimestamp": event["lastTimestamp"],
                     "message": event["message"]}
        self._observed.put(key, _Observed(event["metadata"]["name"], event["count"],
                                          event["firstTimestamp"]))
        if not self._allow(event, now):
            return None
        return Correlation(event, patch)

    def _aggregate(self, event: Obj, now: float) -> tuple[Obj, tuple[Any, ...]]:
        similar_key = _similarity(event)
        similar = self._similar.get(similar_key)
        if similar is None or now - similar.last > SIMILAR_WINDOW:
            similar = _Similar()
        similar.messages.add(event.get("message") or "")
        similar.last = now
        self._similar.put(similar_key, similar)
        if len(similar.messages) < SIMILAR_EVENTS:
            return event, _identity(event)
        similar.messages.pop()  # keep the set at its threshold, not growing
        stamp = format_time(now)
        name = (event.get("involvedObject") or {}).get("name") or "event"
        combined = {**event, "metadata": {**event["metadata"],
                                          "name": f"{name}.{time.time_ns():x}"},
                    "message": COMBINED + (event.get("message") or ""), "count": 1,
                    "firstTimestamp": stamp, "lastTimestamp": stamp}
        # keyed by similarity, so every later similar event bumps the combined one
        return combined, ("combined", *similar_key)

    def _allow(self, event: Obj, now: float) -> bool:
        key = _source_and_object(event)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(SPAM_BURST), now)
        bucket.tokens = min(float(SPAM_BURST),
                            bucket.tokens + (now - bucket.last) / SPAM_REFILL)
        bucket.last = now
        self._buckets.put(key, bucket)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


class EventRecorder:
    """Correlates and writes the Events of every component on one client."""

    def __init__(self, client: Client) -> None:
        # weakly: `recorder_for` keys recorders by their client, which must stay
        # collectable while its recorder is cached
        self._client = weakref.ref(client)
        self.correlator = EventCorrelator()
        self.events_rt = client.resource("v1", "Event")
        self._queue: asyncio.Queue[tuple[Obj, float, dict[str, str]]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Client:
        client = self._client()
        if client is None:
            raise RuntimeError("the client of this event recorder is gone")
        return client

    def _correlate(self, obj: Obj, now: float, *, component: str, type_: str, reason: str,
                   message: str, field_path: str = "", host: str = "",
                   reporting_instance: str = "") -> Correlation | None:
        event = event_for(obj, component=component, type_=type_, reason=reason,
                          message=message, reporting_instance=reporting_instance,
                          now=format_time(now), field_path=field_path, host=host)
        return self.correlator.correlate(event, now)

    async def emit(self, obj: Obj, *, component: str, type_: str, reason: str, message: str,
                   field_path: str = "", host: str = "", reporting_instance: str = "") -> None:
        """Record an event about obj now, in the caller's task (type_ is "Normal" or
        "Warning"; field_path names the part of obj, e.g. `spec.containers{app}`; host
        the node reporting it)."""
        c = self._correlate(obj, time.time(), component=component, type_=type_,
                            reason=reason, message=message, field_path=field_path, host=host,
                            reporting_instance=reporting_instance)
        if c is not None:
            await self._write(c)

    def record(self, obj: Obj, *, component: str, type_: str, reason: str, message: str,
               field_path: str = "", host: str = "", reporting_instance: str = "") -> None:
        """Like `emit`, without waiting: stamped now, correlated and written by a
        background task, so the caller pays for one queue append."""
        if self._queue.qsize() >= MAX_PENDING:
            return  # shed load rather than grow without bound
        self._queue.put_nowait((obj, time.time(), {
            "component": component, "type_": type_, "reason": reason, "message": message,
            "field_path": field_path, "host": host, "reporting_instance": reporting_instance}))
        if len(self._tasks) < WRITERS:
            task = asyncio.get_running_loop().create_task(self._drain(), name="event-writer")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the background writers; what they had not written is dropped."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _drain(self) -> None:
        while not self._queue.empty():
            obj, now, fields = self._queue.get_nowait()
            c = self._correlate(obj, now, **fields)
            if c is not None:
                await self._write(c)

    async def _write(self, c: Correlation) -> None:
        meta = c.event["metadata"]
        try:
            await self._send(c.event, c.patch)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # any failure: an Event is never worth failing a reconcile
            log.debug("event %s on %s dropped: %s", c.event.get("reason"),
                      (c.event.get("involvedObject") or {}).get("name") or meta["name"], e)

    async def _send(self, event: Obj, patch: Obj | None) -> None:
        name, ns = event["metadata"]["name"], event["metadata"]["namespace"]
        if patch is not None:
            try:
                await self.client.patch(self.events_rt, name, patch, namespace=ns)
                return
            except errors.ApiError as e:
                if e.code != 404:
                    raise
                # gone (or not written yet): create it with the count it has reached
        try:
            await self.client.create(self.events_rt, event, ns)
        except errors.ApiError as e:
            if e.code != 409:
                raise
            if patch is not None:  # a first write landed meanwhile: bump that one
                await self.client.patch(self.events_rt, name, patch, namespace=ns)


_RECORDERS: weakref.WeakKeyDictionary[Client, EventRecorder] = weakref.WeakKeyDictionary()


def recorder_for(client: Client) -> EventRecorder:
    """The one recorder of this client, made on first use."""
    recorder = _RECORDERS.get(client)
    if recorder is None:
        recorder = _RECORDERS[client] = EventRecorder(client)
    return recorder


async def record_event(client: Client, obj: Obj, *, component: str, type_: str,
                       reason: str, message: str, field_path: str = "", host: str = "") -> None:
    """Write a core/v1 Event about obj (type_ is "Normal" or "Warning") through the
    client's recorder; field_path names the part of it, e.g. `spec.containers{app}`,
    host the node reporting it."""
    await recorder_for(client).emit(obj, component=component, type_=type_, reason=reason,
                                    message=message, field_path=field_path, host=host)
