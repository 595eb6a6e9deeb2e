"""Per-kind strategies: everything the generic registry does differently for one kind.

Kubernetes splits its API server's storage in two: one generic store
(`genericregistry.Store`) that creates, updates and deletes every kind the same way,
and a small strategy per resource (`pkg/registry/<group>/<resource>/strategy.go`)
with the kind's own rules. pinnace does the same: `registry.py` holds no per-kind
branch; it asks the resource type's `Strategy` at fixed points of the write path:

    create:  prepare_for_create → (initial status) → admit_create → validate
             → allocate (undo on failure) → to_storage → store.create
    update:  prepare_for_update(subresource) → (defaults, generation) → validate_update
             → allocate → to_storage → store CAS → updated
    delete:  admit_delete → default_propagation, grace_period, finalizing
             → mark_deleting (pending) | store delete → deleted

A kind without rules of its own gets `DefaultStrategy`; custom resources will too.
Adding a kind's rules means a module under `strategies/` and a line in its table,
never a branch in the registry. `strategies.build` makes one strategy per resource
type up front, so finding it on the hot path is a dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pinnace.api import defaults, selectors, validation
from pinnace.api.kinds import ResourceType
from pinnace.api.patch import Shape, root_shape
from pinnace.api.types import Obj
from pinnace.apiserver.allocators import ServiceAllocator
from pinnace.apiserver.objects import deep_copy


def _no_undo() -> None:
    return None


def _no_objects() -> list[Obj]:
    return []


@dataclass
class StrategyContext:
    """What strategies share with the registry that built them (allocators, and reads of
    other kinds that admission needs)."""

    services: ServiceAllocator
    # the StorageClasses (DefaultStorageClass admission), read from the watch cache
    storage_classes: Callable[[], list[Obj]] = _no_objects


class Strategy(Protocol):
    """One kind's rules on the generic write path (see the module docstring)."""

    rt: ResourceType
    # DELETE answers with the deleted object rather than a Status (ReturnDeletedObject)
    returns_deleted_object: bool
    # rebuild in-memory allocations from the stored objects at start (`restore`)
    allocates: bool

    # PATCH with application/strategic-merge-patch+json (needs the kind's Go struct tags)
    accepts_strategic_merge: bool
    # the kind's schema as server-side apply and managedFields walk it (list and map types)
    shape: Shape

    def reset_fields(self, subresource: str) -> tuple[str, ...]:
        """Top-level fields a write through this endpoint does not own (GetResetFields)."""
        ...

    def decode(self, body: Obj, field_validation: str) -> tuple[Obj, list[str]]:
        """Typed decoding of a request body: wrong types refused (400), unknown fields
        dropped; returns the object and the warnings for `fieldValidation=Warn`."""
        ...

    def apply_defaults(self, obj: Obj) -> None:
        """The kind's defaults, on every write (decode-time defaulting)."""
        ...

    def validate(self, obj: Obj) -> None:
        """Validation of a new object (raises a 422 ApiError naming every bad field)."""
        ...

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        """Whether an update bumps metadata.generation (for kinds that track it)."""
        ...

    def scale_of(self, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale view of an object (kinds with a scale subresource)."""
        ...

    def replicas_patch(self, replicas: int) -> Obj:
        """The merge patch that sets an object's desired replicas to `replicas`."""
        ...

    def prepare_for_create(self, obj: Obj) -> None:
        """Field resets and defaults of a new object, after metadata (PrepareForCreate)."""
        ...

    def admit_create(self, obj: Obj) -> None:
        """Mutating admission of a new object, before validation."""
        ...

    def prepare_for_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        """The object to write: what this endpoint may change taken from `new`, the rest
        from `old` (PrepareForUpdate; subresources merge into a copy of `old`)."""
        ...

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        ...

    def allocate(self, new: Obj, old: Obj | None) -> Callable[[], None]:
        """Allocation admission (ClusterIPs, NodePorts); returns the undo for a write
        that does not land."""
        ...

    def updated(self, new: Obj, old: Obj) -> None:
        """After an update landed: release what `old` held and `new` no longer does."""
        ...

    async def to_storage(self, obj: Obj) -> Obj:
        """The object as the store keeps it (a custom resource converted to its storage
        version by the definition's webhook)."""
        ...

    def deleted(self, obj: Obj) -> None:
        """After the object left the store."""
        ...

    def restore(self, objects: list[Obj]) -> None:
        ...

    def admit_delete(self, name: str) -> None:
        """Admission of a delete, before anything is read (raises ApiError to refuse)."""
        ...

    def default_propagation(self) -> str | None:
        """The propagation policy of a delete that names none (None: keep finalizers)."""
        ...

    def grace_period(self, obj: Obj, options: dict[str, Any]) -> int:
        """Seconds the object stays, marked, before it goes (graceful deletion)."""
        ...

    def finalizing(self, obj: Obj) -> bool:
        """True when a delete must wait for something besides metadata.finalizers."""
        ...

    def mark_deleting(self, obj: Obj) -> None:
        """Changes to a copy of the object being marked for deletion."""
        ...


class DefaultStrategy:
    """The rules every kind has unless its strategy says otherwise."""

    returns_deleted_object = False
    allocates = False
    # Creating keeps the status the client sent (objects whose writer reports it)
    keeps_status_on_create = False
    # spec changes bump metadata.generation (kinds with controllers or users watching
    # observedGeneration)
    tracks_generation = False
    accepts_strategic_merge = True

    def __init__(self, rt: ResourceType, ctx: StrategyContext) -> None:
        self.rt = rt
        self.ctx = ctx
        self.has_status = "status" in rt.subresources
        self.shape = root_shape(rt.schema_ref)
        # computed once: these tuples are handed to every write of the kind
        self._reset = {"": ("status",) if self.has_status else (),
                       "status": ("spec",) if self.has_status else ()}

    def reset_fields(self, subresource: str) -> tuple[str, ...]:
        if not self.has_status:
            return ()
        return self._reset["status"] if subresource == "status" else self._reset[""]

    def decode(self, body: Obj, field_validation: str) -> tuple[Obj, list[str]]:
        return validation.check_structure(body, self.rt.schema_ref,
                                          field_validation=field_validation)

    def apply_defaults(self, obj: Obj) -> None:
        defaults.apply_defaults(self.rt, obj)

    def validate(self, obj: Obj) -> None:
        validation.validate(self.rt, obj)

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        # everything but metadata and status: status is the system's report on the spec
        return any(new.get(k) != old.get(k) for k in {*new, *old}
                   if k not in ("metadata", "status"))

    def scale_of(self, obj: Obj) -> Obj:
        m = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        sel = spec.get("selector")
        out_status: dict[str, Any] = {"replicas": status.get("replicas", 0)}
        if sel:
            out_status["selector"] = str(selectors.LabelSelector.from_dict(sel))
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                "creationTimestamp") if k in m},
                "spec": {"replicas": spec.get("replicas", 0)}, "status": out_status}

    def replicas_patch(self, replicas: int) -> Obj:
        return {"spec": {"replicas": replicas}}

    def prepare_for_create(self, obj: Obj) -> None:
        if self.tracks_generation:
            obj["metadata"]["generation"] = 1
        else:
            obj["metadata"].pop("generation", None)
        if self.has_status and not self.keeps_status_on_create:
            obj.pop("status", None)  # status is written through its own endpoint

    def admit_create(self, obj: Obj) -> None:
        return None

    def prepare_for_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        if subresource == "status":
            merged = deep_copy(old)
            merged["status"] = new.get("status", {})
            return merged
        if self.has_status:
            # the main endpoint does not change status
            if "status" in old:
                new["status"] = deep_copy(old["status"])
            else:
                new.pop("status", None)
        return new

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        validation.validate(self.rt, new, old)

    def allocate(self, new: Obj, old: Obj | None) -> Callable[[], None]:
        return _no_undo

    def updated(self, new: Obj, old: Obj) -> None:
        return None

    async def to_storage(self, obj: Obj) -> Obj:
        return obj

    def deleted(self, obj: Obj) -> None:
        return None

    def restore(self, objects: list[Obj]) -> None:
        return None

    def admit_delete(self, name: str) -> None:
        return None

    def default_propagation(self) -> str | None:
        return None

    def grace_period(self, obj: Obj, options: dict[str, Any]) -> int:
        return 0

    def finalizing(self, obj: Obj) -> bool:
        return False

    def mark_deleting(self, obj: Obj) -> None:
        return None


class GenerationStrategy(DefaultStrategy):
    """Workloads (apps, batch): spec changes bump metadata.generation."""

    tracks_generation = True


class ReportedStatusStrategy(DefaultStrategy):
    """Kinds whose creator reports the status (Node, Lease, Event, EndpointSlice, …):
    creating keeps the status sent."""

    keeps_status_on_create = True


class ReturnsDeletedStrategy(DefaultStrategy):
    """DELETE answers with the object itself (Kubernetes' ReturnDeletedObject)."""

    returns_deleted_object = True
