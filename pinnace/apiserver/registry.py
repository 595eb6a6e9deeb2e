"""The generic registry: the life of an object from a request body to a store write.

One code path creates, updates, patches and deletes every kind (Kubernetes'
`genericregistry.Store`); what differs per kind is asked of the resource type's
`Strategy` (`strategy.py`, `strategies/`), so this module holds no per-kind branch.
The order of a create, as the code runs it:

    decode        kind/apiVersion match, typed decoding and unknown fields (Strict/Warn)
    lifecycle     NamespaceLifecycle: the namespace exists and is not terminating
    defaults      schema defaults (owned by the writer in managedFields)
    managedFields the writer's entry (Update, or Apply for server-side apply)
    metadata      uid, creationTimestamp, no deletion fields
    strategy      prepare_for_create (generation, status reset, a Job's selector),
                  then the initial status
    admission     strategy.admit_create (DefaultTolerationSeconds, DefaultStorageClass …),
                  then the admission chain's mutating phase (webhooks; admission_chain.py)
    validation    the kind's validation, then write checks (RBAC escalation), then the
                  chain's validating phase (policies, webhooks)
    allocation    strategy.allocate (ClusterIPs, NodePorts), undone if the write fails
    write         store.create → wait until the watch cache has the new revision

An update (PUT, and every patch once applied to the current object) runs: decode →
preconditions (uid, resourceVersion) → immutable metadata kept → strategy
prepare_for_update (the subresource's merge: status, binding, finalize, …; the main
endpoint keeps status) → defaults → generation → mutating admission →
strategy.validate_update → write checks → validating admission → managedFields →
no-op check → allocation → compare-and-swap → strategy.updated. A delete:
strategy.admit_delete → preconditions → validating admission → propagation policy →
grace period → mark (deletionTimestamp, finalizers) or remove → strategy.deleted.

Every store write is a compare-and-swap on the revision read (`_swap`); a lost race
waits until the cache holds the winner's write and raises `LostRace` (409), which
`_retrying` answers by running the whole operation again on the new version, unless
the client pinned a resourceVersion. Reads are served by the watch caches. The HTTP
layer (`handlers.py`) only translates requests to these calls.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pinnace.api import apply as ssa
from pinnace.api import defaults, errors, patch
from pinnace.api.kinds import REGISTRY, Registry, ResourceType
from pinnace.api.timestamps import now_rfc3339
from pinnace.api.types import Obj
from pinnace.apiserver import strategies
from pinnace.apiserver.admission_chain import AdmissionPlugin, Attributes
from pinnace.apiserver.allocators import ServiceAllocator
from pinnace.apiserver.objects import deep_copy, encode, meta
from pinnace.apiserver.strategies.namespaces import admit_create_in
from pinnace.apiserver.strategy import Strategy, StrategyContext
from pinnace.apiserver.watch_cache import WatchCache
from pinnace.apiserver.write_rules import (
    check_delete_preconditions,
    gc_finalizers,
    marked_deleting,
    named,
    patch_names_rv,
    propagation_policy,
    same_but_managed_time,
    should_delete_during_update,
    subresource_part,
)
from pinnace.store.interface import (
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    Store,
)

# Kubernetes retries a patch (and an unconditional update) on conflict until it lands;
# the bound only stops a livelock from spinning forever.
_MAX_CONFLICT_RETRIES = 100
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MODIFIED = "the object has been modified; please apply your changes to the latest " \
    "version and try again"
T = TypeVar("T")


class LostRace(errors.ApiError):
    """409 Conflict: another write landed between our read and our compare-and-swap.
    The operation may run again on the new version (see `_retrying`)."""


def _lost(rt: ResourceType, name: str, message: str = _MODIFIED) -> LostRace:
    return LostRace(**vars(errors.conflict(rt.plural, name, message, rt.group)))


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    warnings: list[str] = field(default_factory=list)
    # the authenticated caller; None for trusted callers (components in this process)
    user: Any = None


class ObjectRegistry:
    def __init__(self, store: Store, kinds: Registry | None = None) -> None:
        self.store = store
        # a registry of its own: the custom kinds this server learns are its alone
        self.kinds = kinds = kinds if kinds is not None else REGISTRY.copy()
        self.caches: dict[ResourceType, WatchCache] = {
            rt: WatchCache(store, rt) for rt in kinds if "get" in rt.verbs}
        self.services = ServiceAllocator()
        classes = kinds.by_kind("storage.k8s.io", "v1", "StorageClass")
        self._ctx = StrategyContext(services=self.services, storage_classes=(
            (lambda: self.caches[classes].list(None)) if classes in self.caches
            else lambda: []))
        self.strategies: dict[ResourceType, Strategy] = strategies.build(kinds, self._ctx)
        self._namespaces = kinds.by_kind("", "v1", "Namespace")
        # checks that see every object about to be written and its writer (RBAC's
        # escalation prevention); each raises an ApiError to refuse the write
        self.write_checks: list[Callable[[ResourceType, Obj, Any], None]] = []
        # admission plugins run after the strategy's own admission (webhooks, policies)
        self.admission: list[AdmissionPlugin] = []
        # service_accounts.ServiceAccountTokens: serves serviceaccounts/token (None: 404)
        self.service_account_tokens: Any = None
        # what serves kinds learnt at run time (custom resources) starts and stops with us
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        for cache in self.caches.values():
            await cache.start()
        for rt, strategy in self.strategies.items():
            if strategy.allocates and rt in self.caches:
                strategy.restore(self.caches[rt].list(None))
        for hook in self.on_start:
            await hook()

    async def stop(self) -> None:
        for hook in self.on_stop:
            await hook()
        for cache in list(self.caches.values()):
            await cache.stop()

    # -- kinds learnt at run time (custom resources) --------------------------------------

    async def serve(self, rt: ResourceType) -> None:
        """Start serving a resource type: its watch cache, its strategy, its routes."""
        self.caches[rt] = WatchCache(self.store, rt)
        await self.caches[rt].start()
        self.strategies[rt] = strategies.strategy_for(rt, self._ctx)
        self.kinds.add(rt)

    def retype(self, old: ResourceType, new: ResourceType) -> None:
        """Serve `new` in place of `old`, which stores its objects under the same keys:
        the watch cache and its open watches carry on."""
        self.caches[new] = self.caches.pop(old)
        self.caches[new].retype(new)
        self.strategies.pop(old, None)
        self.strategies[new] = strategies.strategy_for(new, self._ctx)
        self.kinds.add(new)

    async def forget(self, rt: ResourceType) -> None:
        """Stop serving a resource type (its objects stay in the store)."""
        self.kinds.remove(rt)
        self.strategies.pop(rt, None)
        if (cache := self.caches.pop(rt, None)) is not None:
            await cache.stop()

    def cache(self, rt: ResourceType) -> WatchCache:
        return self.caches[rt]

    def returns_deleted_object(self, rt: ResourceType) -> bool:
        return self.strategies[rt].returns_deleted_object

    # -- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.caches[rt].get(namespace, name)
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return obj

    def _admit_namespace(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        """NamespaceLifecycle for a create: the namespace exists and is not terminating."""
        if rt.namespaced and self._namespaces is not None:
            assert namespace
            admit_create_in(rt, name, namespace,
                            self.caches[self._namespaces].get(None, namespace))

    # -- the compare-and-swap, written once ----------------------------------------------

    async def _retrying(self, rt: ResourceType, name: str,
                        attempt: Callable[[], Awaitable[T]], *, retry: bool) -> T:
        """Run attempt until it does not lose a race (`retry`: the client did not pin a
        resourceVersion, so the operation applies to whatever is current)."""
        for _ in range(_MAX_CONFLICT_RETRIES):
            try:
                return await attempt()
            except LostRace:
                if not retry:
                    raise
        raise errors.conflict(rt.plural, name, "too many conflicting concurrent writes",
                              rt.group)

    async def _swap(self, rt: ResourceType, om: Obj, new: Obj | None) -> int:
        """Replace (new None: delete) the stored version whose metadata is `om`; returns
        the new revision once the watch cache has applied it."""
        namespace, name = om.get("namespace"), om["name"]
        key, expected = rt.key(namespace, name), int(om["resourceVersion"])
        try:
            if new is None:
                kv = await self.store.delete(key, expected)
            else:
                body = dict(new)  # the revision is the row's, not part of the value
                body["metadata"] = {k: v for k, v in new["metadata"].items()
                                    if k != "resourceVersion"}
                body = await self.strategies[rt].to_storage(body)
                kv = await self.store.update(key, encode(body), expected)
        except RevisionConflictError as e:
            if e.current is not None:  # let the retry read the winner's write
                with contextlib.suppress(TimeoutError):
                    await self.caches[rt].wait_for(e.current.mod_revision)
            raise _lost(rt, name) from None
        except KeyNotFoundError:
            raise errors.not_found(rt.plural, name, rt.group) from None
        await self.caches[rt].wait_for(kv.mod_revision)
        return kv.mod_revision

    # -- create --------------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, body: Any,
                     opts: WriteOptions) -> Obj:
        obj = self._decode(rt, namespace, body, opts)
        m = meta(obj)
        self._admit_namespace(rt, namespace, m.get("name") or "")
        if not m.get("name") and not m.get("generateName"):
            raise errors.invalid(rt.kind, "", [errors.Cause(
                "metadata.name", "Required value: name or generateName is required",
                errors.REQUIRED)], rt.group)
        # decode-time defaults are owned by the writer; what the strategy adds after
        # (uid, status, a Job's selector) belongs to no manager, as in Kubernetes
        strategy = self.strategies[rt]
        strategy.apply_defaults(obj)
        obj = ssa.update_managed_fields(
            None, obj, manager=opts.field_manager, operation="Update", now=now_rfc3339(),
            api_version=rt.api_version, shape=strategy.shape,
            reset_fields=strategy.reset_fields(""))
        return await self._create_prepared(rt, namespace, obj, opts)

    async def _create_prepared(self, rt: ResourceType, namespace: str | None, obj: Obj,
                               opts: WriteOptions) -> Obj:
        """Metadata, the strategy's part of a create (PrepareForCreate) and admission,
        then validation and the write."""
        strategy = self.strategies[rt]
        m = meta(obj)
        for k in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink"):
            m.pop(k, None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now_rfc3339()
        strategy.prepare_for_create(obj)
        defaults.initial_status(rt, obj)
        strategy.admit_create(obj)
        obj = await self._admit("mutate", "CREATE", rt, obj, None, opts)
        m = meta(obj)
        generated = not m.get("name")
        for _ in range(8):
            if generated:
                m["name"] = m["generateName"] + "".join(
                    secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            strategy.validate(obj)
            self._check_write(rt, obj, opts)
            await self._admit("validate", "CREATE", rt, obj, None, opts)
            release = strategy.allocate(obj, None)
            if opts.dry_run:
                release()
                return obj
            try:
                stored = await strategy.to_storage(obj)
                kv = await self.store.create(rt.key(namespace, m["name"]), encode(stored))
            except KeyExistsError:
                release()
                if generated:
                    continue
                raise errors.already_exists(rt.plural, m["name"], rt.group) from None
            except BaseException:
                release()
                raise
            await self.caches[rt].wait_for(kv.mod_revision)
            return self.caches[rt].get(namespace, m["name"]) or obj
        raise errors.ApiError(409, "AlreadyExists", "could not generate a unique name")

    def _decode(self, rt: ResourceType, namespace: str | None, body: Any,
                opts: WriteOptions) -> Obj:
        """Kind/namespace checks and typed decoding (types, unknown fields)."""
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"{rt.kind} in version \"{rt.version}\" cannot be handled as a {rt.kind}: "
                f"the body must be a JSON object")
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})" if api_version != rt.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj, warnings = self.strategies[rt].decode(body, opts.field_validation)
        opts.warnings.extend(warnings)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        m = meta(obj)
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request")
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)
        return obj

    def _check_write(self, rt: ResourceType, obj: Obj, opts: WriteOptions) -> None:
        for check in self.write_checks:
            check(rt, obj, opts.user)

    async def _admit(self, phase: str, operation: str, rt: ResourceType, obj: Obj | None,
                     old: Obj | None, opts: WriteOptions, subresource: str = "") -> Obj:
        """The admission chain's `mutate` or `validate` phase; returns the object as the
        mutating phase left it."""
        if not self.admission:
            return obj  # type: ignore[return-value]
        attrs = Attributes.of(operation, rt, obj, old, subresource=subresource,
                              user=opts.user, dry_run=opts.dry_run,
                              field_manager=opts.field_manager, warnings=opts.warnings)
        for plugin in self.admission:
            await getattr(plugin, phase)(attrs)
        return attrs.obj or obj  # type: ignore[return-value]

    # -- update --------------------------------------------------------------------------

    async def update(self, rt: ResourceType, namespace: str | None, name: str, body: Any,
                     opts: WriteOptions, *, subresource: str = "") -> Obj:
        part = subresource_part(body, subresource, opts.field_validation)
        new = self._decode(rt, namespace, part, opts)
        m = named(new, name)
        rv = m.get("resourceVersion")

        async def attempt() -> Obj:
            old = self.get(rt, namespace, name)
            uid = m.get("uid")
            if uid and uid != old["metadata"].get("uid"):
                # a uid in the body is a precondition, as in Kubernetes' UpdatedObjectInfo
                raise errors.conflict(
                    rt.plural, name, f"Precondition failed: UID in precondition: {uid}, UID in "
                    f"object meta: {old['metadata'].get('uid')}", rt.group)
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _lost(rt, name)
            return await self._write_update(rt, old, deep_copy(new), opts,
                                            subresource=subresource, operation="Update")
        # an unconditional update (no resourceVersion) applies to whatever is current,
        # so a lost race is retried, as Kubernetes does
        return await self._retrying(rt, name, attempt, retry=not rv)

    async def _write_update(self, rt: ResourceType, old: Obj, new: Obj, opts: WriteOptions,
                            *, subresource: str, operation: str,
                            managed_done: bool = False) -> Obj:
        strategy = self.strategies[rt]
        om, m = old["metadata"], meta(new)
        # fields the client cannot change
        for k in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            if k in om:
                m[k] = om[k]
            else:
                m.pop(k, None)
        new = strategy.prepare_for_update(new, old, subresource)
        m = new["metadata"]
        strategy.apply_defaults(new)
        if "generation" in om:
            spec_changed = strategy.spec_changed(new, old)
            m["generation"] = om["generation"] + (1 if spec_changed else 0)
        new = await self._admit("mutate", "UPDATE", rt, new, old, opts, subresource)
        m = meta(new)
        strategy.validate_update(new, old, subresource)
        self._check_write(rt, new, opts)
        await self._admit("validate", "UPDATE", rt, new, old, opts, subresource)
        if not managed_done:
            new = ssa.update_managed_fields(
                old, new, manager=opts.field_manager, operation=operation, now=now_rfc3339(),
                api_version=rt.api_version, subresource=subresource,
                shape=strategy.shape, reset_fields=strategy.reset_fields(subresource))
            m = new["metadata"]
        m["resourceVersion"] = om["resourceVersion"]
        if same_but_managed_time(new, old):
            return old  # nothing changed: Kubernetes skips the write
        release = strategy.allocate(new, old)
        if opts.dry_run:
            release()
            return new
        try:
            if should_delete_during_update(strategy, new, old):
                return await self._remove(rt, new)
            await self._swap(rt, om, new)
        except BaseException:
            release()
            raise
        strategy.updated(new, old)
        return self.caches[rt].get(om.get("namespace"), m["name"]) or new

    async def guaranteed_update(self, rt: ResourceType, namespace: str | None, name: str,
                                mutate: Callable[[Obj], Obj], opts: WriteOptions, *,
                                subresource: str) -> Obj:
        """Kubernetes' GuaranteedUpdate, for a write the server derives itself (a binding):
        `mutate(current)` returns the new object (sharing what it leaves alone; it raises
        to refuse) and admission sees it; no decoding, defaults or managedFields, and
        validation only of what admission changed. Retried on a lost race."""
        async def attempt() -> Obj:
            old = self.get(rt, namespace, name)
            new = mutated = mutate(old)
            new = await self._admit("mutate", "UPDATE", rt, new, old, opts, subresource)
            if new is not mutated:
                self.strategies[rt].validate_update(new, old, subresource)
            await self._admit("validate", "UPDATE", rt, new, old, opts, subresource)
            if opts.dry_run:
                return new
            await self._swap(rt, old["metadata"], new)
            return self.caches[rt].get(namespace, name) or new
        return await self._retrying(rt, name, attempt, retry=True)

    # -- patch ---------------------------------------------------------------------------

    async def patch(self, rt: ResourceType, namespace: str | None, name: str,
                    patch_type: str, body: Any, opts: WriteOptions, *,
                    subresource: str = "") -> tuple[Obj, bool]:
        """Returns (object, created)."""
        if patch_type == "apply" and not opts.field_manager:
            raise errors.bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set")

        async def attempt() -> tuple[Obj, bool]:
            current = self.caches[rt].get(namespace, name)
            if current is None:
                if patch_type != "apply" or subresource:
                    raise errors.not_found(rt.plural, name, rt.group)
                return await self._apply_create(rt, namespace, name, body, opts), True
            return await self._patch_once(rt, current, patch_type, body, opts,
                                          subresource=subresource), False
        # the object changed under us: patch again on the new version, as Kubernetes
        # does, unless the patch itself named a resourceVersion
        return await self._retrying(rt, name, attempt, retry=not patch_names_rv(body))

    async def _patch_once(self, rt: ResourceType, current: Obj, patch_type: str,
                          body: Any, opts: WriteOptions, *, subresource: str) -> Obj:
        base = current  # the patch functions copy what they change; the cache stays intact
        strategy = self.strategies[rt]
        managed_done = False
        if patch_type == "json":
            new = patch.json_patch(base, body)
        elif patch_type == "merge":
            new = patch.merge_patch(base, body)
        elif patch_type == "strategic":
            if not strategy.accepts_strategic_merge:
                raise errors.unsupported_media_type(
                    "application/strategic-merge-patch+json")
            new = patch.strategic_merge_patch(base, body, rt.schema_ref)
        elif patch_type == "apply":
            cfg = self._apply_config(rt, current["metadata"].get("namespace"),
                                     current["metadata"]["name"], body, opts)
            new = ssa.apply(base, cfg, manager=opts.field_manager, force=opts.force,
                            shape=strategy.shape, now=now_rfc3339(),
                            api_version=rt.api_version,
                            reset_fields=strategy.reset_fields(subresource))
            managed_done = True
        else:
            raise errors.unsupported_media_type(patch_type)
        new = self._decode(rt, current["metadata"].get("namespace"), new, opts)
        rv = meta(new).get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise _lost(rt, current["metadata"]["name"])
        return await self._write_update(
            rt, current, new, opts, subresource=subresource,
            operation="Apply" if managed_done else "Update", managed_done=managed_done)

    def _apply_config(self, rt: ResourceType, namespace: str | None, name: str, body: Any,
                      opts: WriteOptions) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("apply patch body must be an object")
        if not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request(
                "invalid object type: apiVersion and kind must be set in an apply patch")
        cfg = self._decode(rt, namespace, body, opts)
        named(cfg, name)
        return cfg

    async def _apply_create(self, rt: ResourceType, namespace: str | None, name: str,
                            body: Any, opts: WriteOptions) -> Obj:
        cfg = self._apply_config(rt, namespace, name, body, opts)
        self._admit_namespace(rt, namespace, name)
        obj = ssa.apply(None, cfg, manager=opts.field_manager, force=opts.force,
                        shape=self.strategies[rt].shape, now=now_rfc3339(),
                        api_version=rt.api_version,
                        reset_fields=self.strategies[rt].reset_fields(""))
        self.strategies[rt].apply_defaults(obj)
        try:
            return await self._create_prepared(rt, namespace, obj, opts)
        except errors.ApiError as e:
            if e.reason == "AlreadyExists":  # created concurrently: apply again as a patch
                raise _lost(rt, name, "the object was created concurrently") from None
            raise

    # -- delete --------------------------------------------------------------------------

    async def delete(self, rt: ResourceType, namespace: str | None, name: str,
                     options: dict[str, Any], opts: WriteOptions) -> tuple[Obj, bool]:
        """Returns (object, gone): gone is False while finalizers or a grace period hold
        the object (it then carries a deletionTimestamp). A write racing with the delete
        makes it start over on the new version, as Kubernetes does, unless the client
        made the delete conditional on a resourceVersion."""
        self.strategies[rt].admit_delete(name)
        pre = options.get("preconditions") or {}

        async def attempt() -> tuple[Obj, bool]:
            current = self.get(rt, namespace, name)
            check_delete_preconditions(rt, current, pre)
            return await self._delete_current(rt, current, options, opts)
        return await self._retrying(rt, name, attempt, retry=not pre.get("resourceVersion"))

    async def _delete_current(self, rt: ResourceType, current: Obj, options: dict[str, Any],
                              opts: WriteOptions) -> tuple[Obj, bool]:
        strategy = self.strategies[rt]
        m = current["metadata"]
        await self._admit("validate", "DELETE", rt, None, current, opts)
        policy = propagation_policy(options) or strategy.default_propagation()
        finalizers = gc_finalizers(list(m.get("finalizers") or []), policy)
        grace = strategy.grace_period(current, options)
        if finalizers or grace > 0 or strategy.finalizing(current):
            return await self._mark_deleting(rt, current, finalizers, grace, opts), False
        # no finalizers left (a Background delete drops the GC's) and no grace: gone now
        if opts.dry_run:
            return current, True
        return await self._remove(rt, current), True

    async def _mark_deleting(self, rt: ResourceType, current: Obj, finalizers: list[str],
                             grace: int, opts: WriteOptions) -> Obj:
        om = current["metadata"]
        new = marked_deleting(current, finalizers, grace)
        self.strategies[rt].mark_deleting(new)
        if new == current:
            return current
        if opts.dry_run:
            return new
        await self._swap(rt, om, new)
        return self.caches[rt].get(om.get("namespace"), om["name"]) or new

    async def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete the stored version `obj` carries the resourceVersion of."""
        revision = await self._swap(rt, obj["metadata"], None)
        self.strategies[rt].deleted(obj)
        out = deep_copy(obj)
        out["metadata"]["resourceVersion"] = str(revision)
        return out

