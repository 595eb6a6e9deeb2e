"""Pods: graceful deletion, DefaultTolerationSeconds, and the binding and
ephemeralcontainers subresources (Kubernetes' `pkg/registry/core/pod/strategy.go`).

- A pod bound to a node is deleted gracefully: it is marked with a deletionTimestamp
  `gracePeriodSeconds` (default: the pod's terminationGracePeriodSeconds, 30) ahead
  and its node agent finishes the delete once the containers stopped. An unbound or
  finished pod goes at once.
- `binding` writes the status the scheduler sent and sets spec.nodeName, once; the
  node name is checked against the old object by `subresources.bind`, not by the
  update validation (which forbids changing it).
- `ephemeralcontainers` changes spec.ephemeralContainers only.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import validation
from pinnace.api.types import Obj
from pinnace.apiserver import admission
from pinnace.apiserver.objects import deep_copy
from pinnace.apiserver.strategy import DefaultStrategy

DEFAULT_GRACE_SECONDS = 30


class PodStrategy(DefaultStrategy):
    returns_deleted_object = True

    def admit_create(self, obj: Obj) -> None:
        admission.default_toleration_seconds(obj)

    def prepare_for_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        if subresource == "binding":
            merged = super().prepare_for_update(new, old, "status")
            merged["spec"]["nodeName"] = new["spec"]["nodeName"]
            return merged
        if subresource == "ephemeralcontainers":
            merged = deep_copy(old)
            merged.setdefault("spec", {})["ephemeralContainers"] = \
                (new.get("spec") or {}).get("ephemeralContainers") or []
            return merged
        return super().prepare_for_update(new, old, subresource)

    def validate_update(self, new: Obj, old: Obj, subresource: str) -> None:
        # a binding sets the (otherwise immutable) node name: validated as a new pod
        validation.validate(self.rt, new, None if subresource == "binding" else old)

    def grace_period(self, obj: Obj, options: dict[str, Any]) -> int:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0  # nothing runs that needs time to stop
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        return max(int(grace), 0)
