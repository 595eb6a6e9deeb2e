"""Strategies of CustomResourceDefinitions and of the custom resources they define.

A custom object is decoded by its version's structural schema (`api/crd_schema.py`):
unknown fields pruned (400 under Strict, warnings under Warn), defaults filled,
then validated — the schema's causes and ObjectMeta's together in one 422. Spec
changes bump metadata.generation; with a status subresource the main endpoint keeps
status and `/status` keeps the rest (DefaultStrategy). Strategic merge patches are
refused (415): custom resources have no Go struct tags to merge by. Server-side apply
and managedFields follow the schema's `x-kubernetes-list-type` (atomic, set, map by
`x-kubernetes-list-map-keys`) and `x-kubernetes-map-type`. Scale reads and
writes the replica counts at the definition's JSON paths.

With conversion `Webhook` an object is stored in the storage version: `to_storage`
converts the written version through the definition's webhook (`crd_conversion.py`).

A definition gets the `customresourcecleanup` finalizer when created; `crd_serving`
removes it once the definition's objects are gone.

`RULES` evaluates `x-kubernetes-validations` (`api/crd_rules.py`, on `api/cel.py`): it
is called with every rule site of an object, its causes join the schema's in the 422.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinnace.api import crd, crd_rules, crd_schema, errors, validation
from pinnace.api.apply import custom_shape
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.apiserver.strategy import DefaultStrategy, StrategyContext

# The CEL evaluator of x-kubernetes-validations rules.
RULES: crd_schema.RuleEvaluator | None = crd_rules.evaluate


def _merge_invalid(rt: ResourceType, obj: Obj, causes: list[errors.Cause],
                   check: Callable[[], None]) -> None:
    """Run the generic validation `check` and raise one 422 with its causes and ours."""
    try:
        check()
    except errors.ApiError as e:
        if e.reason != "Invalid":
            raise
        causes = [*e.causes, *causes]
    if causes:
        name = (obj.get("metadata") or {}).get("name") or ""
        raise errors.invalid(rt.kind, name, causes, rt.group)


class CustomResourceStrategy(DefaultStrategy):
    tracks_generation = True
    accepts_strategic_merge = False

    def __init__(self, rt: ResourceType, ctx: StrategyContext) -> None:
        super().__init__(rt, ctx)
        self.version: crd.CustomVersion = rt.custom
        self.schema = self.version.schema
        self.shape = custom_shape(self.schema)
        # set by crd_serving once the definition is being deleted: no new objects
        self.terminating = False

    async def to_storage(self, obj: Obj) -> Obj:
        version = self.version
        if version.converter is None or self.rt.version == version.storage_version:
            return obj
        group = f"{self.rt.group}/" if self.rt.group else ""
        return (await version.converter.convert([obj], group + version.storage_version))[0]

    def admit_create(self, obj: Obj) -> None:
        if self.terminating:
            raise errors.method_not_allowed(
                "create not allowed while custom resource definition is terminating")

    def decode(self, body: Obj, field_validation: str) -> tuple[Obj, list[str]]:
        obj, unknown = crd_schema.prune(body, self.schema)
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise errors.bad_request(
                f'{self.rt.kind} in version "{self.rt.version}" cannot be handled as a '
                f"{self.rt.kind}: metadata must be an object")
        messages = [f'unknown field "{p}"' for p in unknown]
        if messages and field_validation == "Strict":
            raise errors.bad_request(
                f'{self.rt.kind} in version "{self.rt.version}" cannot be handled as a '
                f"{self.rt.kind}: strict decoding error: " + ", ".join(messages))
        return obj, messages if field_validation == "Warn" else []

    def apply_defaults(self, obj: Obj) -> None:
        crd_schema.apply_defaults(obj, self.schema)

    def validate(self, obj: Obj) -> None:
        self._validate(obj, None)

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        self._validate(new, old)

    def _validate(self, obj: Obj, old: Obj | None) -> None:
        # ObjectMeta, then the schema; never a built-in kind's rules (a custom kind may
        # be called Service or Pod in its own group)
        causes = [*validation.object_meta_causes(obj, old, namespaced=self.rt.namespaced),
                  *crd_schema.validate(obj, self.schema, old, rules=RULES)]
        if causes:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise errors.invalid(self.rt.kind, name, causes, self.rt.group)

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        # without a status subresource, status is content like any other field
        if self.has_status:
            return super().spec_changed(new, old)
        return any(new.get(k) != old.get(k) for k in {*new, *old} if k != "metadata")

    def scale_of(self, obj: Obj) -> Obj:
        m = obj["metadata"]
        paths = self.version.scale
        out_status: dict[str, Any] = {
            "replicas": _read(obj, paths.get("statusReplicasPath", "")) or 0}
        selector = _read(obj, paths.get("labelSelectorPath", ""))
        if isinstance(selector, str) and selector:
            out_status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                "creationTimestamp") if k in m},
                "spec": {"replicas": _read(obj, paths.get("specReplicasPath", "")) or 0},
                "status": out_status}

    def replicas_patch(self, replicas: int) -> Obj:
        parts = [p for p in self.version.scale.get("specReplicasPath", ".spec.replicas")
                 .split(".") if p]
        out: Any = replicas
        for part in reversed(parts):
            out = {part: out}
        return out


def _read(obj: Obj, path: str) -> Any:
    node: Any = obj
    for part in (p for p in path.split(".") if p):
        node = node.get(part) if isinstance(node, dict) else None
    return node


class DefinitionStrategy(DefaultStrategy):
    """CustomResourceDefinition: its own validation, defaults and cleanup finalizer."""

    tracks_generation = True

    def apply_defaults(self, obj: Obj) -> None:
        crd.apply_defaults(obj)

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        # what kube-apiserver answers a create with, before the names are judged
        obj["status"] = {"conditions": [], "acceptedNames": {"plural": "", "kind": ""},
                         "storedVersions": sorted(
                             v.get("name") for v in obj["spec"].get("versions") or []
                             if isinstance(v, dict) and v.get("storage") is True
                             and isinstance(v.get("name"), str))}
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if crd.CLEANUP_FINALIZER not in finalizers:
            finalizers.append(crd.CLEANUP_FINALIZER)

    def validate(self, obj: Obj) -> None:
        _merge_invalid(self.rt, obj, crd.validate(obj),
                       lambda: validation.validate(self.rt, obj))

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        causes = crd.validate(new, old) if subresource != "status" else []
        _merge_invalid(self.rt, new, causes, lambda: validation.validate(self.rt, new, old))
