"""Informer: a local cache of one resource type kept current by list + watch.

    pods = Informer(client, client.resource("v1", "Pod"))
    pods.add_handler(on_add=..., on_update=..., on_delete=...)
    pods.add_index("node", lambda pod: [pod["spec"].get("nodeName", "")])
    asyncio.create_task(pods.run()); await pods.wait_synced()

Design: list, fill the cache, then watch from the list's resourceVersion. A
watch that ends (server timeout) is resumed from the last seen resourceVersion
(bookmarks keep it fresh), and so is a watch cut off by connection trouble
(the transport may have moved to another API server of the cluster meanwhile); a
410 Gone or any other error relists and diffs against the cache, so handlers see
exactly the changes they missed. Handlers must be
cheap and must not block: the usual one queues a key. `resync_period` replays
every cached object as an update, for controllers that want a periodic sweep.
Cached objects are shared: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dis
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from pinnace.api import errors
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.client.client import Client

log = logging.getLogger(__name__)

IndexFunc = Callable[[Obj], list[str]]


def key_of(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's cache key)."""
    m = obj["metadata"]
    ns = m.get("namespace")
    return f"{ns}/{m['name']}" if ns else m["name"]


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


# the index every component that works per node keeps on a pod informer (controllers
# sweeping a node's pods, simulated nodes finding theirs): one name, one function
NODE_NAME_INDEX = "spec.nodeName"


def _pod_node_name(pod: Obj) -> list[str]:
    return [(pod.get("spec") or {}).get("nodeName") or ""]


def index_pods_by_node(pods: Informer) -> None:
    """Index a (shared) pod informer by node name under NODE_NAME_INDEX; read it with
    `pods.by_index(NODE_NAME_INDEX, node_name)` ("" holds the unscheduled pods)."""
    pods.add_index(NODE_NAME_INDEX, _pod_node_name)


def _same_function(a: IndexFunc, b: IndexFunc) -> bool:
    """The same object, equal bound methods, or the same computation: one lambda made
    by two instances, or two spellings of one expression (same bytecode, constants,
    names, defaults, captured values, and the same objects behind the globals read)."""
    if a is b or a == b:
        return True
    if hasattr(a, "__self__") or hasattr(b, "__self__"):
        return False  # methods of different objects may read different state
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    if code_a is None or code_b is None:
        return False
    if (code_a.co_code, code_a.co_consts, code_a.co_names) != \
            (code_b.co_code, code_b.co_consts, code_b.co_names):
        return False
    try:
        cells_a = tuple(c.cell_contents for c in getattr(a, "__closure__", None) or ())
        cells_b = tuple(c.cell_contents for c in getattr(b, "__closure__", None) or ())
    except ValueError:  # an empty cell
        return False
    if cells_a != cells_b or \
            getattr(a, "__defaults__", None) != getattr(b, "__defaults__", None):
        return False
    # the globals it reads must be the same objects (owner_key, a module constant, ...)
    globals_a, globals_b = getattr(a, "__globals__", {}), getattr(b, "__globals__", {})
    return all(globals_a.get(i.argval, i) is globals_b.get(i.argval, i)
               for i in dis.get_instructions(code_a) if i.opname == "LOAD_GLOBAL")


@dataclass
class Handler:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class Informer:
    def __init__(self, client: Client, rt: ResourceType, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "",
                 resync_period: float = 0.0) -> None:
        self.client = client
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.cache: dict[str, Obj] = {}
        self.resource_version = ""
        self._handlers: list[Handler] = []
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._synced = asyncio.Event()

    # -- registration --------------------------------------------------------------------

    def add_handler(self, on_add: Callable[[Obj], None] | None = None,
                    on_update: Callable[[Obj, Obj], None] | None = None,
                    on_delete: Callable[[Obj], None] | None = None) -> None:
        handler = Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced.is_set() and on_add:
            for obj in list(self.cache.values()):
                on_add(obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by `fn`'s values under `name`. Registering a name again is
        fine with the same function (two instances of one controller on a shared
        factory register the same lambda), an error with another one: the second
        registrant would silently read the first one's index (client-go refuses an
        indexer conflict likewise)."""
        existing = self._indexers.get(name)
        if existing is not None:
            if not _same_function(existing, fn):
                raise ValueError(f"index {name!r} is already registered on the {self.rt.kind} "
                                 "informer with a different function")
            return
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    # -- reads ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.cache.values())
        return self.by_index("namespace", namespace) if "namespace" in self._indexers else \
            [o for o in self.cache.values() if o["metadata"].get("namespace") == namespace]

    def by_index(self, name: str, value: str) -> list[Obj]:
        keys = self._indices[name].get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync()) if self.resync_period else None
        delay = 0.2
        watching = False
        resume = False  # watch again from resource_version instead of relisting
        try:
            while True:
                try:
                    if not resume:
                        await self._list()
                        delay = 0.2
                    resume = False
                    watched_from = self.resource_version
                    while True:
                        watching = True
                        await self._watch()
                except asyncio.CancelledError:
                    raise
                except errors.ApiError as e:
                    if e.code != 410:
                        log.warning("informer %s: %s", self.rt.plural, e)
                except Exception as e:  # connection trouble: a pause, then go on
                    log.debug("informer %s: %s", self.rt.plural, e)
                    # a watch cut off (its server went away) resumes where it was, on
                    # whichever server the transport reaches now, as client-go's
                    # reflector does; a 410 from there relists
                    resume = watching and bool(self.resource_version)
                    if resume and self.resource_version != watched_from:
                        delay = 0.2  # the watch had been working: no back-off yet
                watching = False
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 10.0)
        finally:
            if resync:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync

    async def _list(self) -> None:
        items: list[Obj] = []
        token = ""
        while True:
            page = await self.client.list(self.rt, self.namespace,
                                          label_selector=self.label_selector,
                                          field_selector=self.field_selector,
                                          limit=500, continue_token=token)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.rt.api_version)
                item.setdefault("kind", self.rt.kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue", "")
            if not token:
                break
        self.resource_version = page["metadata"].get("resourceVersion", "")
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._delete(key, self.cache[key])
        for key, obj in fresh.items():
            self._upsert(key, obj)
        self._synced.set()

    async def _watch(self) -> None:
        async for ev_type, obj in self.client.watch(
                self.rt, self.namespace, resource_version=self.resource_version,
                label_selector=self.label_selector, field_selector=self.field_selector,
                timeout_seconds=int(240 + 120 * random.random())):
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if ev_type == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            obj.setdefault("apiVersion", self.rt.api_version)
            obj.setdefault("kind", self.rt.kind)
            key = key_of(obj)
            if ev_type == "DELETED":
                old = self.cache.get(key)
                if old is not None:
                    self._delete(key, obj)
            else:
                self._upsert(key, obj)
            if rv:
                self.resource_version = rv

    def _upsert(self, key: str, obj: Obj) -> None:
        old = self.cache.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == \
                obj["metadata"].get("resourceVersion"):
            return
        self.cache[key] = obj
        self._reindex(key, old, obj)
        for h in self._handlers:
            if old is None:
                if h.on_add:
                    h.on_add(obj)
            elif h.on_update:
                h.on_update(old, obj)

    def _delete(self, key: str, obj: Obj) -> None:
        old = self.cache.pop(key, None)
        self._reindex(key, old, None)
        for h in self._handlers:
            if h.on_delete:
                h.on_delete(obj)

    def _reindex(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            if old is not None:
                for value in fn(old):
                    keys = index.get(value)
                    if keys:
                        keys.discard(key)
                        if not keys:
                            del index[value]
            if new is not None:
                for value in fn(new):
                    index.setdefault(value, set()).add(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for obj in list(self.cache.values()):
                for h in self._handlers:
                    if h.on_update:
                        h.on_update(obj, obj)
