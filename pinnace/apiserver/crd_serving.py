"""Serving CustomResourceDefinitions: the API server learns and forgets kinds at run time.

kube-apiserver's apiextensions part runs a few controllers over definitions; pinnace
runs their work in one loop inside the API server, fed by the definitions' watch
cache (no polling), because what it changes is the server itself:

- names: a definition whose plural, kind, or a short name is already served in its
  group (by another definition or a built-in kind) gets `NamesAccepted=False`
  (`NameConflict`) and is not served; otherwise it is accepted and `Established`
  (kubectl wait --for=condition=established);
- serving: each served version becomes a resource type (`api/crd.py`) added to the
  server's kinds registry with its own watch cache and strategy, so routes, discovery
  and OpenAPI show it as soon as the status says Established; a changed definition
  replaces its types, keeping the watch cache (and the open watches) of each version
  still stored alike (a new schema, printer columns or another version added); a
  removed one is forgotten;
- conversion `Webhook`: the versions' types share one `crd_conversion.Converter`;
- cleanup: a definition being deleted keeps being served while its objects are
  deleted (each through the registry, so their own finalizers hold them, as with
  kopf's); when none is left, the `customresourcecleanup` finalizer is removed and
  the definition goes — and with it the API from discovery.

A definition's key is its name; `sync(name)` is idempotent and runs again on every
event of the definition and, while it is terminating, every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging

from pinnace.api import crd, errors
from pinnace.api.kinds import ResourceType
from pinnace.api.timestamps import now_rfc3339
from pinnace.api.types import Obj
from pinnace.apiserver.crd_conversion import Converter
from pinnace.apiserver.objects import deep_copy
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions
from pinnace.apiserver.strategies.custom import CustomResourceStrategy
from pinnace.apiserver.watch_cache import Watcher
from pinnace.apiserver.webhook_client import WebhookClient

log = logging.getLogger(__name__)

_MANAGER = "apiextensions-apiserver"
_CLEANUP_RETRY = 1.0


class CustomResourceServing:
    def __init__(self, registry: ObjectRegistry) -> None:
        self.registry = registry
        rt = registry.kinds.by_kind(crd.GROUP, "v1", "CustomResourceDefinition")
        assert rt is not None
        self.rt = rt
        # definition name -> the resource types served for it
        self.served: dict[str, list[ResourceType]] = {}
        # definition name -> the spec its types were built from
        self._specs: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._watcher: Watcher | None = None
        self._pending: set[str] = set()
        self.webhooks = WebhookClient(registry)

    async def start(self) -> None:
        cache = self.registry.cache(self.rt)
        self._watcher, backlog = cache.watch(None, lambda _obj: True, None)
        # serve what is defined before answering the first request
        for ev in backlog:
            await self._sync_safely(ev.obj["metadata"]["name"])
        self._task = asyncio.create_task(self._run(), name="crd serving")

    async def stop(self) -> None:
        if self._watcher is not None:
            self.registry.cache(self.rt).unwatch(self._watcher)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for types in self.served.values():
            for rt in types:
                await self.registry.forget(rt)
        self.served.clear()
        await self.webhooks.close()

    async def _run(self) -> None:
        assert self._watcher is not None
        queue = self._watcher.queue
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), _CLEANUP_RETRY)
            except TimeoutError:
                ev = None
            names = set(self._pending)
            if ev is not None:
                names.add(ev.obj["metadata"]["name"])
            while not queue.empty():
                more = queue.get_nowait()
                if more is not None:
                    names.add(more.obj["metadata"]["name"])
            self._pending.clear()
            for name in sorted(names):
                await self._sync_safely(name)

    async def _sync_safely(self, name: str) -> None:
        try:
            await self.sync(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("serving CustomResourceDefinition %s failed; retrying", name)
            self._pending.add(name)

    # -- one definition -----------------------------------------------------------------

    async def sync(self, name: str) -> None:
        obj = self.registry.cache(self.rt).get(None, name)
        if obj is None:
            await self._unserve(name)
            return
        conflict = self._conflict(obj)
        if not conflict:
            await self._serve(name, obj)
        else:
            await self._unserve(name)
        status = crd.accepted_status(obj, conflict, now_rfc3339())
        if status != obj.get("status"):
            await self._write_status(obj, status)
        if obj["metadata"].get("deletionTimestamp"):
            await self._clean_up(name, obj)

    def _conflict(self, obj: Obj) -> str:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        own = {id(rt) for rt in self.served.get(obj["metadata"]["name"], [])}
        for rt in self.registry.kinds:
            if rt.group != group or id(rt) in own:
                continue
            if rt.plural == names.get("plural"):
                return f'"{rt.plural}" is already in use'
            if rt.kind == names.get("kind"):
                return f'"{rt.kind}" is already in use'
            taken = set(rt.short_names) & set(names.get("shortNames") or [])
            if taken:
                return f'"{sorted(taken)[0]}" is already in use'
        return ""

    async def _serve(self, name: str, obj: Obj) -> None:
        spec = json.dumps(obj.get("spec"), sort_keys=True)
        current = self.served.get(name, [])
        if current and self._specs.get(name) == spec:
            return
        wanted = self._with_converter(obj, crd.resource_types(obj))
        # a version served before and stored alike keeps its watch cache, and so the
        # open watches on its objects; others start afresh
        kept = {rt.version: rt for rt in current}
        for rt in current:
            if not any(crd.stored_alike(rt, new) for new in wanted):
                del kept[rt.version]
                await self.registry.forget(rt)
        for rt in wanted:
            old = kept.get(rt.version)
            if old is not None:
                self.registry.retype(old, rt)
            else:
                await self.registry.serve(rt)
        self.served[name] = wanted
        self._specs[name] = spec
        log.info("serving %s (%s)", name, ", ".join(rt.version for rt in wanted))

    def _with_converter(self, obj: Obj, types: list[ResourceType]) -> list[ResourceType]:
        """Conversion `Webhook`: each version's type carries the definition's converter
        (its watch cache reads other versions through it, writes store through it)."""
        conversion = (obj.get("spec") or {}).get("conversion") or {}
        if conversion.get("strategy") != "Webhook":
            return types
        converter = Converter(self.webhooks, conversion.get("webhook") or {})
        return [dataclasses.replace(rt, custom=dataclasses.replace(
            rt.custom, converter=converter)) for rt in types]

    async def _unserve(self, name: str) -> None:
        self._specs.pop(name, None)
        for rt in self.served.pop(name, []):
            await self.registry.forget(rt)

    async def _write_status(self, obj: Obj, status: Obj) -> None:
        new = deep_copy(obj)
        new["status"] = status
        try:
            await self.registry.update(self.rt, None, obj["metadata"]["name"], new,
                                       WriteOptions(field_manager=_MANAGER),
                                       subresource="status")
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise
            self._pending.add(obj["metadata"]["name"])  # changed meanwhile: again

    async def _clean_up(self, name: str, obj: Obj) -> None:
        """Delete the definition's objects; once none is left, let the definition go."""
        types = self.served.get(name, [])
        for rt in types:  # creates are refused from now on, as in Kubernetes
            strategy = self.registry.strategies.get(rt)
            if isinstance(strategy, CustomResourceStrategy):
                strategy.terminating = True
        remaining = 0
        if types:
            # the storage version's cache holds the objects as stored: no conversion
            rt = next((t for t in types if t.custom.storage), types[0])
            for item in self.registry.cache(rt).list(None):
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue  # its own finalizers hold it
                with contextlib.suppress(errors.ApiError):
                    m = item["metadata"]
                    await self.registry.delete(rt, m.get("namespace"), m["name"], {},
                                               WriteOptions(field_manager=_MANAGER))
            remaining = len(self.registry.cache(rt).list(None))
        if remaining:
            self._pending.add(name)  # look again in a second
            return
        finalizers = [f for f in obj["metadata"].get("finalizers") or []
                      if f != crd.CLEANUP_FINALIZER]
        if finalizers == (obj["metadata"].get("finalizers") or []):
            return
        await self._unserve(name)
        current = self.registry.cache(self.rt).get(None, name)
        if current is None:
            return
        new = deep_copy(current)
        new["metadata"]["finalizers"] = finalizers
        try:
            await self.registry.update(self.rt, None, name, new,
                                       WriteOptions(field_manager=_MANAGER))
        except errors.ApiError as e:
            if e.code != 404:
                self._pending.add(name)
