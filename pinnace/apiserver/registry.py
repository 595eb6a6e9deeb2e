"""The registry: the life of an object from a request body to a store write.

create / update / patch / delete for every kind, in Kubernetes' order:
decode checks (types, unknown fields) → metadata (uid, timestamps, generation,
generateName) → defaults → admission (allocations) → validation → managedFields →
compare-and-swap write → wait until the watch cache has seen the write. Reads are
served by the watch caches. The HTTP layer (`handlers.py`) only translates
requests to these calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pinnace.api import apply as ssa
from pinnace.api import defaults, errors, patch, validation
from pinnace.api.kinds import REGISTRY, Registry, ResourceType
from pinnace.apiserver import admission, allocators
from pinnace.apiserver.allocators import ServiceAllocator
from pinnace.apiserver.objects import deep_copy, encode, meta, now_rfc3339, without_volatile
from pinnace.apiserver.watch_cache import WatchCache
from pinnace.store.interface import (
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    Store,
)

# Kinds whose spec changes bump metadata.generation (the ones with controllers or
# users watching observedGeneration).
_GENERATION_GROUPS = {"apps", "batch"}
# DELETE of these answers with the deleted object rather than a Status
# (Kubernetes' ReturnDeletedObject).
_RETURNS_DELETED_OBJECT = {"Pod", "PersistentVolumeClaim", "PersistentVolume", "Service",
                           "ServiceAccount", "StorageClass"}
# Creating these keeps the status the client sent (the node agent reports it).
_KEEPS_STATUS_ON_CREATE = {"Node", "Event", "Lease", "EndpointSlice", "Endpoints"}
# Kubernetes retries a patch (and an unconditional update) on conflict until it lands;
# the bound only stops a livelock from spinning forever.
_MAX_CONFLICT_RETRIES = 100
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    warnings: list[str] = field(default_factory=list)
    # the authenticated caller; None for trusted callers (components in this process)
    user: Any = None


def _has_status_subresource(rt: ResourceType) -> bool:
    return "status" in rt.subresources


class ObjectRegistry:
    def __init__(self, store: Store, kinds: Registry = REGISTRY) -> None:
        self.store = store
        self.kinds = kinds
        self.caches: dict[ResourceType, WatchCache] = {
            rt: WatchCache(store, rt) for rt in kinds if "get" in rt.verbs}
        self.services = ServiceAllocator()
        # checks that see every object about to be written and its writer (RBAC's
        # escalation prevention); each raises an ApiError to refuse the write
        self.write_checks: list[Callable[[ResourceType, dict[str, Any], Any], None]] = []

    async def start(self) -> None:
        for cache in self.caches.values():
            await cache.start()
        svc = self.kinds.by_kind("", "v1", "Service")
        if svc:
            self.services.load(self.caches[svc].list(None))

    async def stop(self) -> None:
        for cache in self.caches.values():
            await cache.stop()

    def cache(self, rt: ResourceType) -> WatchCache:
        return self.caches[rt]

    # -- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.caches[rt].get(namespace, name)
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return obj

    def require_namespace(self, namespace: str, *, creating: bool = False) -> None:
        ns_rt = self.kinds.by_kind("", "v1", "Namespace")
        assert ns_rt is not None
        ns = self.caches[ns_rt].get(None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {namespace} because it is being "
                f"terminated")

    # -- create --------------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, body: Any,
                     opts: WriteOptions) -> dict[str, Any]:
        obj = self._decode(rt, namespace, body, opts)
        if rt.namespaced:
            assert namespace
            self.require_namespace(namespace, creating=True)
        m = meta(obj)
        if not m.get("name"):
            if not m.get("generateName"):
                raise errors.invalid(rt.kind, "", [errors.Cause(
                    "metadata.name", "Required value: name or generateName is required",
                    errors.REQUIRED)], rt.group)
        # decode-time defaults are owned by the writer; what the strategy adds after
        # (uid, status, a Job's selector) belongs to no manager, as in Kubernetes
        defaults.apply_defaults(rt, obj)
        obj = ssa.update_managed_fields(
            None, obj, manager=opts.field_manager, operation="Update", now=now_rfc3339(),
            api_version=rt.api_version, schema_ref=rt.schema_ref,
            reset_fields=_reset_fields(rt, ""))
        return await self._create_prepared(rt, namespace, obj, opts)

    async def _create_prepared(self, rt: ResourceType, namespace: str | None,
                               obj: dict[str, Any], opts: WriteOptions) -> dict[str, Any]:
        """The strategy's part of a create (Kubernetes' PrepareForCreate), then the write."""
        m = meta(obj)
        self._init_metadata(rt, obj)
        if _has_status_subresource(rt) and rt.kind not in _KEEPS_STATUS_ON_CREATE:
            obj.pop("status", None)
        if rt.kind == "Job" and rt.group == "batch":
            defaults.job_selector_defaults(obj)
        defaults.initial_status(rt, obj)
        admission.admit_create(rt.kind, rt.group, obj)
        generated = not m.get("name")
        for _ in range(8):
            if generated:
                m["name"] = m["generateName"] + "".join(
                    secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            validation.validate(rt, obj)
            self._check_write(rt, obj, opts)
            release = self._admit_create(rt, obj, opts)
            if opts.dry_run:
                release()
                return obj
            try:
                kv = await self.store.create(rt.key(namespace, m["name"]), encode(obj))
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
                opts: WriteOptions) -> dict[str, Any]:
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
        obj, warnings = validation.check_structure(
            body, rt.schema_ref, field_validation=opts.field_validation)
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

    def _init_metadata(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        m = meta(obj)
        for k in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink"):
            m.pop(k, None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now_rfc3339()
        if rt.group in _GENERATION_GROUPS and rt.kind != "ControllerRevision":
            m["generation"] = 1
        else:
            m.pop("generation", None)

    def _check_write(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions) -> None:
        for check in self.write_checks:
            check(rt, obj, opts.user)

    def _admit_create(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions):
        """Admission that allocates (ClusterIPs, NodePorts); returns the undo."""
        if rt.kind == "Service" and rt.group == "":
            return self.services.allocate(obj, None)
        return lambda: None

    # -- update --------------------------------------------------------------------------

    async def update(self, rt: ResourceType, namespace: str | None, name: str, body: Any,
                     opts: WriteOptions, *, subresource: str = "") -> dict[str, Any]:
        new = self._decode(rt, namespace, _subresource_part(body, subresource, opts), opts)
        m = meta(new)
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL "
                f"({name})")
        m["name"] = name
        rv = m.get("resourceVersion")
        for _ in range(_MAX_CONFLICT_RETRIES):
            old = self.get(rt, namespace, name)
            uid = m.get("uid")
            if uid and uid != old["metadata"].get("uid"):
                # a uid in the body is a precondition, as in Kubernetes' UpdatedObjectInfo
                raise errors.conflict(
                    rt.plural, name, f"Precondition failed: UID in precondition: {uid}, UID in "
                    f"object meta: {old['metadata'].get('uid')}", rt.group)
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, name, "the object has been modified; please "
                                      "apply your changes to the latest version and try again",
                                      rt.group)
            try:
                return await self._write_update(rt, old, deep_copy(new), opts,
                                                subresource=subresource, operation="Update")
            except errors.ApiError as e:
                # an unconditional update (no resourceVersion) applies to whatever is
                # current, so a lost race is retried, as Kubernetes does
                if rv or not _lost_race(e):
                    raise
        raise errors.conflict(rt.plural, name, "too many conflicting concurrent writes",
                              rt.group)

    async def _write_update(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any],
                            opts: WriteOptions, *, subresource: str, operation: str,
                            managed_done: bool = False) -> dict[str, Any]:
        om, m = old["metadata"], meta(new)
        namespace = om.get("namespace")
        # fields the client cannot change
        for k in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            if k in om:
                m[k] = om[k]
            else:
                m.pop(k, None)
        if subresource in ("status", "binding"):
            # status writes change status only; a binding also sets the node, once
            merged = deep_copy(old)
            merged["status"] = new.get("status", {})
            if subresource == "binding":
                merged["spec"]["nodeName"] = new["spec"]["nodeName"]
            new = merged
            m = new["metadata"]
        elif subresource == "ephemeralcontainers":
            merged = deep_copy(old)
            merged.setdefault("spec", {})["ephemeralContainers"] = \
                (new.get("spec") or {}).get("ephemeralContainers") or []
            new = merged
            m = new["metadata"]
        elif subresource == "finalize":
            # the namespace finalize endpoint changes spec.finalizers only
            merged = deep_copy(old)
            merged.setdefault("spec", {})["finalizers"] = \
                (new.get("spec") or {}).get("finalizers") or []
            new = merged
            m = new["metadata"]
        elif _has_status_subresource(rt):
            if "status" in old:
                new["status"] = deep_copy(old["status"])
            else:
                new.pop("status", None)
            if _is_core(rt, "Namespace"):
                # spec.finalizers belong to the finalize endpoint
                _keep_namespace_finalizers(new, old)
        if _is_core(rt, "Service") and not subresource:
            allocators.drop_type_dependent_fields(new, old)
        defaults.apply_defaults(rt, new)
        if "generation" in om:
            spec_changed = _spec_of(new) != _spec_of(old)
            m["generation"] = om["generation"] + (1 if spec_changed else 0)
        validation.validate(rt, new, None if subresource == "binding" else old)
        self._check_write(rt, new, opts)
        if not managed_done:
            new = ssa.update_managed_fields(
                old, new, manager=opts.field_manager, operation=operation, now=now_rfc3339(),
                api_version=rt.api_version, subresource=subresource,
                schema_ref=rt.schema_ref, reset_fields=_reset_fields(rt, subresource))
            m = new["metadata"]
        m["resourceVersion"] = om["resourceVersion"]
        if _same_but_managed_time(new, old):
            return old  # nothing changed: Kubernetes skips the write
        release = lambda: None  # noqa: E731
        if rt.kind == "Service" and rt.group == "":
            release = self.services.allocate(new, old)
        if opts.dry_run:
            release()
            return new
        if _should_delete_during_update(rt, new, old):
            return await self._remove(rt, namespace, new, int(om["resourceVersion"]))
        body = dict(new)
        body["metadata"] = {k: v for k, v in m.items() if k != "resourceVersion"}
        try:
            kv = await self.store.update(rt.key(namespace, m["name"]), encode(body),
                                         int(om["resourceVersion"]))
        except RevisionConflictError as e:
            release()
            await self._catch_up(rt, e)
            raise errors.conflict(rt.plural, m["name"], "the object has been modified; please "
                                  "apply your changes to the latest version and try again",
                                  rt.group) from None
        except KeyNotFoundError:
            release()
            raise errors.not_found(rt.plural, m["name"], rt.group) from None
        if rt.kind == "Service" and rt.group == "":
            self.services.release_old(new, old)
        await self.caches[rt].wait_for(kv.mod_revision)
        return self.caches[rt].get(namespace, m["name"]) or new

    async def _catch_up(self, rt: ResourceType, e: RevisionConflictError) -> None:
        """After a lost compare-and-swap: wait until the cache holds the winner's write."""
        if e.current is not None:
            with contextlib.suppress(TimeoutError):
                await self.caches[rt].wait_for(e.current.mod_revision)

    # -- patch ---------------------------------------------------------------------------

    async def patch(self, rt: ResourceType, namespace: str | None, name: str,
                    patch_type: str, body: Any, opts: WriteOptions, *,
                    subresource: str = "") -> tuple[dict[str, Any], bool]:
        """Returns (object, created)."""
        for _ in range(_MAX_CONFLICT_RETRIES):
            current = self.caches[rt].get(namespace, name)
            if patch_type == "apply":
                if not opts.field_manager:
                    raise errors.bad_request(
                        "PATCH, application/apply-patch+yaml requires fieldManager to be set")
                if current is None:
                    if subresource:
                        raise errors.not_found(rt.plural, name, rt.group)
                    return await self._apply_create(rt, namespace, name, body, opts), True
            if current is None:
                raise errors.not_found(rt.plural, name, rt.group)
            try:
                return await self._patch_once(rt, current, patch_type, body, opts,
                                              subresource=subresource), False
            except errors.ApiError as e:
                # the object changed under us: patch again on the new version, as
                # Kubernetes does, unless the patch itself named a resourceVersion
                if _lost_race(e) and not _patch_names_rv(body):
                    continue
                raise
        raise errors.conflict(rt.plural, name, "too many conflicting concurrent writes",
                              rt.group)

    async def _patch_once(self, rt: ResourceType, current: dict[str, Any], patch_type: str,
                          body: Any, opts: WriteOptions, *, subresource: str) -> dict[str, Any]:
        base = current  # the patch functions copy what they change; the cache stays intact
        managed_done = False
        if patch_type == "json":
            new = patch.json_patch(base, body)
        elif patch_type == "merge":
            new = patch.merge_patch(base, body)
        elif patch_type == "strategic":
            new = patch.strategic_merge_patch(base, body, rt.schema_ref)
        elif patch_type == "apply":
            cfg = self._apply_config(rt, current["metadata"].get("namespace"),
                                     current["metadata"]["name"], body, opts)
            new = ssa.apply(base, cfg, manager=opts.field_manager, force=opts.force,
                            schema_ref=rt.schema_ref, now=now_rfc3339(),
                            api_version=rt.api_version,
                            reset_fields=_reset_fields(rt, subresource))
            managed_done = True
        else:
            raise errors.unsupported_media_type(patch_type)
        new = self._decode(rt, current["metadata"].get("namespace"), new, opts)
        rv = meta(new).get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, current["metadata"]["name"],
                                  "the object has been modified; please apply your changes to "
                                  "the latest version and try again", rt.group)
        return await self._write_update(
            rt, current, new, opts, subresource=subresource,
            operation="Apply" if managed_done else "Update", managed_done=managed_done)

    def _apply_config(self, rt: ResourceType, namespace: str | None, name: str, body: Any,
                      opts: WriteOptions) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("apply patch body must be an object")
        if not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request(
                "invalid object type: apiVersion and kind must be set in an apply patch")
        cfg = self._decode(rt, namespace, body, opts)
        m = meta(cfg)
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL "
                f"({name})")
        m["name"] = name
        return cfg

    async def _apply_create(self, rt: ResourceType, namespace: str | None, name: str,
                            body: Any, opts: WriteOptions) -> dict[str, Any]:
        cfg = self._apply_config(rt, namespace, name, body, opts)
        if rt.namespaced:
            assert namespace
            self.require_namespace(namespace, creating=True)
        obj = ssa.apply(None, cfg, manager=opts.field_manager, force=opts.force,
                        schema_ref=rt.schema_ref, now=now_rfc3339(),
                        api_version=rt.api_version, reset_fields=_reset_fields(rt, ""))
        defaults.apply_defaults(rt, obj)
        try:
            return await self._create_prepared(rt, namespace, obj, opts)
        except errors.ApiError as e:
            if e.reason == "AlreadyExists":  # created concurrently: apply again as a patch
                raise errors.conflict(rt.plural, name, "the object was created concurrently",
                                      rt.group) from None
            raise

    # -- delete --------------------------------------------------------------------------

    async def delete(self, rt: ResourceType, namespace: str | None, name: str,
                     options: dict[str, Any], opts: WriteOptions) -> tuple[dict[str, Any], bool]:
        """Returns (object, gone): gone is False while finalizers or a grace period hold
        the object (it then carries a deletionTimestamp). A write racing with the delete
        makes it start over on the new version, as Kubernetes does, unless the client
        made the delete conditional on a resourceVersion."""
        pre = options.get("preconditions") or {}
        for _ in range(_MAX_CONFLICT_RETRIES):
            current = self.get(rt, namespace, name)
            m = current["metadata"]
            if pre.get("uid") and pre["uid"] != m.get("uid"):
                raise errors.conflict(
                    rt.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {m.get('uid')}", rt.group)
            if pre.get("resourceVersion") and \
                    pre["resourceVersion"] != m.get("resourceVersion"):
                raise errors.conflict(
                    rt.plural, name, f"Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{m.get('resourceVersion')}", rt.group)
            try:
                return await self._delete_current(rt, current, options, opts)
            except errors.ApiError as e:
                if not _lost_race(e) or pre.get("resourceVersion"):
                    raise
        raise errors.conflict(rt.plural, name, "too many conflicting concurrent writes",
                              rt.group)

    async def _delete_current(self, rt: ResourceType, current: dict[str, Any],
                              options: dict[str, Any], opts: WriteOptions,
                              ) -> tuple[dict[str, Any], bool]:
        m = current["metadata"]
        namespace = m.get("namespace")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", [errors.Cause(
                "propagationPolicy", f'Unsupported value: "{policy}": supported values: '
                '"Foreground", "Background", "Orphan", "nil"', errors.NOT_SUPPORTED)])
        if policy is None and _is_batch_job(rt):
            # batch/v1 Jobs orphan their pods unless told otherwise (Kubernetes keeps this
            # default for compatibility; kubectl always sends Background)
            policy = "Orphan"
        finalizers = _gc_finalizers(list(m.get("finalizers") or []), policy)
        grace = self._grace_period(rt, current, options)
        if _is_core(rt, "Namespace") and (finalizers or (current.get("spec") or {}).get(
                "finalizers")):
            return await self._mark_deleting(rt, current, finalizers, 0, opts,
                                             terminating=True), False
        if finalizers or grace > 0:
            return await self._mark_deleting(rt, current, finalizers, grace, opts), False
        # no finalizers left (a Background delete drops the GC's) and no grace: gone now
        if opts.dry_run:
            return current, True
        return await self._remove(rt, namespace, current, int(m["resourceVersion"])), True

    def _grace_period(self, rt: ResourceType, obj: dict[str, Any],
                      options: dict[str, Any]) -> int:
        """Pods bound to a node terminate gracefully (the node agent finishes the delete);
        everything else goes at once."""
        if rt.kind != "Pod" or rt.group:
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(grace), 0)

    async def _mark_deleting(self, rt: ResourceType, current: dict[str, Any],
                             finalizers: list[str], grace: int, opts: WriteOptions, *,
                             terminating: bool = False) -> dict[str, Any]:
        om = current["metadata"]
        new = deep_copy(current)
        m = new["metadata"]
        if finalizers:
            m["finalizers"] = finalizers
        else:
            m.pop("finalizers", None)
        # deletionTimestamp is when the grace period ends; marking an object deleted
        # bumps its generation (Kubernetes' BeforeDelete / markAsDeleting)
        if not om.get("deletionTimestamp"):
            m["deletionTimestamp"] = _rfc3339_after(now_rfc3339(), grace)
            m["deletionGracePeriodSeconds"] = grace
            if om.get("generation"):
                m["generation"] = om["generation"] + 1
        elif grace < (om.get("deletionGracePeriodSeconds") or 0):
            # a grace period may only shrink; the deadline moves with it
            old_grace = om.get("deletionGracePeriodSeconds") or 0
            m["deletionTimestamp"] = _rfc3339_after(om["deletionTimestamp"], grace - old_grace)
            m["deletionGracePeriodSeconds"] = grace
        if terminating:
            new.setdefault("status", {})["phase"] = "Terminating"
        if new == current:
            return current
        if opts.dry_run:
            return new
        body = dict(new)
        body["metadata"] = {k: v for k, v in m.items() if k != "resourceVersion"}
        try:
            kv = await self.store.update(rt.key(om.get("namespace"), om["name"]), encode(body),
                                         int(om["resourceVersion"]))
        except RevisionConflictError as e:
            await self._catch_up(rt, e)
            raise errors.conflict(rt.plural, om["name"], "the object has been modified; please "
                                  "apply your changes to the latest version and try again",
                                  rt.group) from None
        await self.caches[rt].wait_for(kv.mod_revision)
        return self.caches[rt].get(om.get("namespace"), om["name"]) or new

    async def _remove(self, rt: ResourceType, namespace: str | None, obj: dict[str, Any],
                      expected_revision: int) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        try:
            kv = await self.store.delete(rt.key(namespace, name), expected_revision)
        except RevisionConflictError as e:
            await self._catch_up(rt, e)
            raise errors.conflict(rt.plural, name, "the object has been modified; please apply "
                                  "your changes to the latest version and try again",
                                  rt.group) from None
        except KeyNotFoundError:
            raise errors.not_found(rt.plural, name, rt.group) from None
        if rt.kind == "Service" and rt.group == "":
            self.services.release(obj)
        await self.caches[rt].wait_for(kv.mod_revision)
        out = deep_copy(obj)
        out["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return out

    @staticmethod
    def returns_deleted_object(rt: ResourceType) -> bool:
        return (rt.group == "" and rt.kind in _RETURNS_DELETED_OBJECT) or \
            rt.group == "storage.k8s.io"


def _subresource_part(body: Any, subresource: str, opts: WriteOptions) -> Any:
    """What a status or binding write takes from its body: everything else comes from the
    stored object, so decoding the rest (a whole pod spec, on every status report and
    every bind) would be wasted. Strict validation still sees the whole body."""
    if subresource not in ("status", "binding") or opts.field_validation == "Strict" or \
            not isinstance(body, dict):
        return body
    part = {k: body[k] for k in ("apiVersion", "kind", "metadata", "status") if k in body}
    spec = body.get("spec")
    if subresource == "binding" and isinstance(spec, dict):
        part["spec"] = {"nodeName": spec.get("nodeName")}
    return part


def _reset_fields(rt: ResourceType, subresource: str) -> tuple[str, ...]:
    """Top-level fields a write through this endpoint does not own."""
    if not _has_status_subresource(rt):
        return ()
    return ("spec",) if subresource == "status" else ("status",)


def _rfc3339_after(timestamp: str, seconds: int) -> str:
    t = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
    return (t + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gc_finalizers(finalizers: list[str], policy: str | None) -> list[str]:
    """The finalizers after a delete with this propagation policy: an explicit policy
    replaces the garbage collector's finalizers (orphan, foregroundDeletion); none
    keeps what the object has."""
    if policy is None:
        return finalizers
    out = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
    if policy == "Foreground":
        out.append("foregroundDeletion")
    elif policy == "Orphan":
        out.append("orphan")
    return out


def _is_batch_job(rt: ResourceType) -> bool:
    return rt.group == "batch" and rt.kind == "Job"


def _is_core(rt: ResourceType, kind: str) -> bool:
    return rt.group == "" and rt.kind == kind


def _keep_namespace_finalizers(new: dict[str, Any], old: dict[str, Any]) -> None:
    finalizers = (old.get("spec") or {}).get("finalizers")
    spec = new.setdefault("spec", {})
    if finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = list(finalizers)


def _should_delete_during_update(rt: ResourceType, new: dict[str, Any],
                                 old: dict[str, Any]) -> bool:
    """An update completes a pending deletion when it leaves no finalizers and the
    deletion has no grace period left to run (Kubernetes' ShouldDeleteDuringUpdate);
    a namespace also needs its spec.finalizers gone."""
    om = old["metadata"]
    if not om.get("deletionTimestamp") or new["metadata"].get("finalizers"):
        return False
    if om.get("deletionGracePeriodSeconds"):
        return False  # a graceful pod deletion: its node agent finishes it
    return not (_is_core(rt, "Namespace") and (new.get("spec") or {}).get("finalizers"))


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what generation counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same_but_managed_time(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """True when only managedFields timestamps differ (a no-op write)."""
    if without_volatile(new) != without_volatile(old):
        return False
    def strip(mf: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "time"} for e in (mf or [])]
    return strip(new["metadata"].get("managedFields")) == \
        strip(old["metadata"].get("managedFields"))


def _lost_race(e: errors.ApiError) -> bool:
    return e.code == 409 and e.reason == "Conflict" and not e.causes


def _patch_names_rv(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("metadata"), dict) and \
        "resourceVersion" in body["metadata"]
