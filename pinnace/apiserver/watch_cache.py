"""The watch cache: each resource type kept in memory, fed by one store watch.

Lists and watches are served from here; the store sees writes only. Design:

- `start()` ranges the type's prefix once, then one task follows
  `store.watch(prefix, revision)` and applies every event to `objects`, appends it
  to a bounded `history` and fans it out to the watchers' queues.
- Objects are kept decoded, with `metadata.resourceVersion` set from the store's
  mod_revision. Callers must treat them as read-only (copy before changing).
- A watch from a resourceVersion replays `history` after it; one older than the
  history's start gets 410 Gone, as a real API server answers.
- A watcher whose queue overflows is closed (its consumer sees `None`): the client
  watches again from its last resourceVersion, exactly as after a server timeout.
- `list_at(revision)` rebuilds the state at an older revision from `history`
  (each event keeps the object before it), so paged lists are consistent snapshots.
- `wait_for(revision)` lets the writer answer only once the cache has seen its own
  write, so a client always reads what it just wrote.
- A custom resource version whose definition converts by webhook reads objects
  stored in another version through the definition's converter, a batch at start and
  one per event. What the webhook fails on is left out and remembered: reading it, or
  listing where it lives, is the conversion's 500 Status; its watchers skip it; every
  second the cache tries again and, once it converts, shows it (ADDED to watchers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pinnace.api import crd_schema, errors
from pinnace.api.kinds import ResourceType
from pinnace.apiserver.objects import encode
from pinnace.store.interface import CompactedError, Event, KeyValue, Store

log = logging.getLogger(__name__)

WAIT_LIMIT = 5.0  # seconds a writer waits for the cache to see its write
WatchFilter = Callable[[dict[str, Any]], bool]


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED | MODIFIED | DELETED
    revision: int
    obj: dict[str, Any]
    prev: dict[str, Any] | None


def decode(kv: KeyValue) -> dict[str, Any]:
    obj = json.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


@dataclass(eq=False)
class Watcher:
    """One client watch: a queue of events that pass its filter (None = closed)."""

    namespace: str | None
    matches: WatchFilter
    queue: asyncio.Queue[CacheEvent | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=10_000))
    closed: bool = False

    def offer(self, ev: CacheEvent) -> None:
        if self.closed:
            return
        if self.namespace and ev.obj["metadata"].get("namespace") != self.namespace:
            return
        now = self.matches(ev.obj)
        before = ev.prev is not None and self.matches(ev.prev)
        # Selector semantics: an object moving into the selection is ADDED to this
        # watcher, one moving out of it is DELETED.
        if ev.type == "DELETED":
            out = ev if now else None
        elif now and not before and ev.type == "MODIFIED":
            out = CacheEvent("ADDED", ev.revision, ev.obj, ev.prev)
        elif before and not now:
            out = CacheEvent("DELETED", ev.revision, ev.obj, ev.prev)
        else:
            out = ev if now else None
        if out is None:
            return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # make room for the end marker so the consumer wakes up
            while True:
                try:
                    self.queue.put_nowait(None)
                    return
                except asyncio.QueueFull:
                    self.queue.get_nowait()


class WatchCache:
    def __init__(self, store: Store, rt: ResourceType, *, history: int = 10_000) -> None:
        self.store = store
        self.rt = rt
        self.prefix = rt.key_prefix()
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: deque[CacheEvent] = deque(maxlen=history)
        self.revision = 0
        # the oldest revision from which a watch can be replayed without a gap
        self.window_start = 0
        self.watchers: set[Watcher] = set()
        # key -> (resourceVersion, JSON bytes) of current objects: encoded once per
        # version, shared by every list and watcher that sends them
        self._encoded: dict[str, tuple[str, bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # the versions of a custom resource share one store prefix; conversion `None`
        # is this version's apiVersion written over the stored one, and its schema's
        # defaults are applied on read, as kube-apiserver does (a default added to a
        # definition shows on objects written before it)
        self._custom_schema = rt.custom.schema if rt.custom is not None else None
        self._converter = getattr(rt.custom, "converter", None)
        # key -> (the stored object, the error) of what the converter failed on
        self._failed: dict[str, tuple[dict[str, Any], errors.ApiError]] = {}
        self._retry: asyncio.Task[None] | None = None

    def _decode(self, kv: KeyValue) -> dict[str, Any]:
        obj = decode(kv)
        if self._custom_schema is not None and not self._needs_conversion(obj):
            obj["apiVersion"] = self.rt.api_version
            crd_schema.apply_defaults(obj, self._custom_schema)
        return obj

    def _needs_conversion(self, obj: dict[str, Any]) -> bool:
        return self._converter is not None and obj.get("apiVersion") != self.rt.api_version

    async def _converted(self, stored: dict[str, dict[str, Any]]
                         ) -> dict[str, dict[str, Any]]:
        """`stored` (key -> decoded object) in this version; what the webhook fails on
        is left out and goes to `_failed`."""
        todo = {k: o for k, o in stored.items() if self._needs_conversion(o)}
        out = {k: o for k, o in stored.items() if k not in todo}
        for key in out:
            self._failed.pop(key, None)
        if not todo:
            return out
        try:
            converted = await self._converter.convert(list(todo.values()),
                                                      self.rt.api_version)
        except errors.ApiError as e:
            log.warning("watch cache %s: %s", self.prefix, e.message)
            self._failed.update({k: (o, e) for k, o in todo.items()})
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._retry_failed(),
                                                  name=f"conversion retry {self.prefix}")
            return out
        for key, obj in zip(todo, converted, strict=True):
            self._failed.pop(key, None)
            crd_schema.apply_defaults(obj, self._custom_schema)
            out[key] = obj
        return out

    async def _retry_failed(self) -> None:
        while self._failed:
            await asyncio.sleep(1.0)
            attempt = dict(self._failed)
            try:
                converted = await self._converter.convert(
                    [o for o, _ in attempt.values()], self.rt.api_version)
            except errors.ApiError:
                continue
            for key, obj in zip(attempt, converted, strict=True):
                if self._failed.get(key) is not attempt[key]:
                    continue  # written or deleted meanwhile
                del self._failed[key]
                crd_schema.apply_defaults(obj, self._custom_schema)
                self.objects[key] = obj
                ev = CacheEvent("ADDED", int(obj["metadata"]["resourceVersion"]), obj, None)
                for w in list(self.watchers):
                    w.offer(ev)

    def retype(self, rt: ResourceType) -> None:
        """Serve the same stored objects as `rt` (a changed definition of a custom
        resource: new schema, printer columns...): current objects get the new schema's
        defaults, open watches carry on."""
        self.rt = rt
        self._custom_schema = rt.custom.schema if rt.custom is not None else None
        self._converter = getattr(rt.custom, "converter", None)
        if self._custom_schema is not None:
            for key, obj in self.objects.items():
                obj = json.loads(json.dumps(obj))  # cached objects never change in place
                crd_schema.apply_defaults(obj, self._custom_schema)
                self.objects[key] = obj
        self._encoded.clear()

    async def start(self) -> None:
        kvs, revision = await self.store.range(self.prefix)
        self.objects = await self._converted({kv.key: self._decode(kv) for kv in kvs})
        self.revision = self.window_start = revision
        # created here, not in the task: the store pins "from revision" at this call, so
        # no write between now and the task's first step is missed
        events = self.store.watch(self.prefix, revision)
        self._task = asyncio.create_task(self._follow(events),
                                         name=f"watch-cache {self.prefix}")

    async def stop(self) -> None:
        for task in (self._task, self._retry):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for w in list(self.watchers):
            w.close()

    async def _follow(self, events: AsyncIterator[Event]) -> None:
        while True:
            try:
                async for sev in events:
                    obj = self._decode(sev.kv)
                    if sev.type != "DELETE" and self._needs_conversion(obj):
                        obj = (await self._converted({sev.kv.key: obj})).get(sev.kv.key)
                    self._apply(sev.type, sev.kv, obj)
                return  # the store closed
            except CompactedError:
                # Only after a very long stall; start over from a fresh list.
                log.warning("watch cache %s fell behind compaction; relisting", self.prefix)
                await self._relist()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch cache %s: store watch failed; retrying", self.prefix)
                await asyncio.sleep(0.5)
            events = self.store.watch(self.prefix, self.revision)

    async def _relist(self) -> None:
        kvs, revision = await self.store.range(self.prefix)
        self._failed.clear()
        self.objects = await self._converted({kv.key: self._decode(kv) for kv in kvs})
        self._encoded.clear()
        self.history.clear()
        self.revision = self.window_start = revision
        for w in list(self.watchers):
            w.close()
        self._wake()

    def _apply(self, kind: str, kv: KeyValue, obj: dict[str, Any] | None) -> None:
        """One store event; obj is its object in this version (None: the converter
        failed on it)."""
        prev = self.objects.get(kv.key)
        ev: CacheEvent | None
        if kind == "DELETE":
            self.objects.pop(kv.key, None)
            self._encoded.pop(kv.key, None)
            self._failed.pop(kv.key, None)
            if obj is not None and self._needs_conversion(obj):
                # metadata is the same in every version: the last converted body will do
                obj = {**prev, "metadata": obj["metadata"]} if prev is not None else None
            ev = CacheEvent("DELETED", kv.mod_revision, obj, prev) if obj else None
        elif obj is None:
            self.objects.pop(kv.key, None)
            self._encoded.pop(kv.key, None)
            ev = None
        else:
            self.objects[kv.key] = obj
            ev = CacheEvent("MODIFIED" if prev is not None else "ADDED", kv.mod_revision, obj, prev)
        self.revision = kv.mod_revision
        if ev is not None:
            self._publish(ev)
        if self._waiters:
            self._wake()

    def _publish(self, ev: CacheEvent) -> None:
        if len(self.history) == self.history.maxlen:
            self.window_start = self.history[0].revision
        self.history.append(ev)
        for w in list(self.watchers):
            w.offer(ev)
            if w.closed:
                self.watchers.discard(w)

    def _wake(self) -> None:
        waiting = []
        for revision, fut in self._waiters:
            if revision <= self.revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((revision, fut))
        self._waiters = waiting

    async def wait_for(self, revision: int) -> None:
        """Wait until this cache has applied revision (a write of this type)."""
        if self.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        # bounded: a store watch that died must not hang the writer forever
        await asyncio.wait_for(fut, WAIT_LIMIT)

    # -- reads ---------------------------------------------------------------------------

    def encoded(self, obj: dict[str, Any]) -> bytes:
        """obj as JSON bytes; remembered for the current version of each object (objects
        in the cache are never changed in place, so a version's bytes never go stale)."""
        m = obj["metadata"]
        key = self.rt.key(m.get("namespace"), m["name"])
        rv = m.get("resourceVersion", "")
        hit = self._encoded.get(key)
        if hit is not None and hit[0] == rv:
            return hit[1]
        data = encode(obj)
        if self.objects.get(key) is obj:
            self._encoded[key] = (rv, data)
        return data

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self.rt.key(namespace, name)
        if key in self._failed:
            raise self._failed[key][1]
        return self.objects.get(key)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """Objects in key order (by namespace, then name), as Kubernetes lists them."""
        prefix = self.rt.key_prefix(namespace)
        failed = next((e for k, (_, e) in self._failed.items() if k.startswith(prefix)), None)
        if failed is not None:
            raise failed
        return [obj for key, obj in sorted(self.objects.items()) if key.startswith(prefix)]

    def list_at(self, namespace: str | None, revision: int) -> list[dict[str, Any]]:
        """Objects as they were at revision, in key order: the current state with the
        history after revision undone. A paged list continues on this snapshot, so
        its pages are consistent, like etcd's reads at a revision. 410 Gone (as
        CompactedError) once the history no longer reaches back that far."""
        if revision >= self.revision:
            return self.list(namespace)
        if revision < self.window_start:
            raise CompactedError(self.window_start)
        objects = dict(self.objects)
        for ev in reversed(self.history):
            if ev.revision <= revision:
                break
            m = ev.obj["metadata"]
            key = self.rt.key(m.get("namespace"), m["name"])
            if ev.prev is None:
                objects.pop(key, None)  # created after revision
            else:
                objects[key] = ev.prev
        prefix = self.rt.key_prefix(namespace)
        return [obj for key, obj in sorted(objects.items()) if key.startswith(prefix)]

    def watch(self, namespace: str | None, matches: WatchFilter,
              from_revision: int | None) -> tuple[Watcher, list[CacheEvent]]:
        """Register a watcher. from_revision None: the current state as ADDED events
        first; otherwise the history after it (410 if it is too old)."""
        if from_revision is None:
            backlog = [CacheEvent("ADDED", int(o["metadata"]["resourceVersion"]), o, None)
                       for o in self.list(namespace)]
        else:
            if from_revision < self.window_start:
                raise CompactedError(self.window_start)
            backlog = [ev for ev in self.history if ev.revision > from_revision]
        watcher = Watcher(namespace, matches)
        self.watchers.add(watcher)
        out: list[CacheEvent] = []
        collector = Watcher(namespace, matches, asyncio.Queue())
        for ev in backlog:
            if from_revision is None:
                if (not namespace or ev.obj["metadata"].get("namespace") == namespace) and \
                        matches(ev.obj):
                    out.append(ev)
            else:
                collector.offer(ev)
        while not collector.queue.empty():
            item = collector.queue.get_nowait()
            if item is not None:
                out.append(item)
        return watcher, out

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        watcher.closed = True
