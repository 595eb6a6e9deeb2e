"""Namespaces: spec.finalizers, the Terminating phase, and NamespaceLifecycle admission
(Kubernetes' `pkg/registry/core/namespace` and
`plugin/pkg/admission/namespace/lifecycle`).

- spec.finalizers belong to the `finalize` subresource: the main endpoint keeps the
  stored ones, `finalize` changes nothing else.
- Deleting a namespace marks it Terminating (deletionTimestamp, status.phase) while
  metadata.finalizers or spec.finalizers remain; the namespace controller empties the
  namespace and then its spec.finalizers, which removes it.
- The namespaces every cluster starts with (`SYSTEM_NAMESPACES`) may not be deleted:
  403 `namespaces "default" is forbidden: this namespace may not be deleted`.
- Nothing is created in a namespace that does not exist (404) or is being terminated
  (403 Forbidden, with the NamespaceTerminating cause Kubernetes adds).
"""

from __future__ import annotations

from pinnace.api import errors
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.apiserver.objects import deep_copy
from pinnace.apiserver.strategy import DefaultStrategy

# created at start by the API server; Kubernetes' immortal namespaces
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_IMMORTAL = frozenset(SYSTEM_NAMESPACES)


def forbidden(rt: ResourceType, name: str, reason: str) -> errors.ApiError:
    """Kubernetes' NewForbidden: '<resource>[.<group>] "<name>" is forbidden: <reason>'."""
    resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
    subject = f'{resource} "{name}"' if name else resource
    return errors.ApiError(403, "Forbidden", f"{subject} is forbidden: {reason}",
                           name=name, group=rt.group, kind=rt.plural)


def admit_create_in(rt: ResourceType, name: str, namespace: str,
                    ns: Obj | None) -> None:
    """NamespaceLifecycle for a create of `rt` named `name` in `namespace` (`ns` is the
    Namespace object, None when it does not exist)."""
    if ns is None:
        raise errors.not_found("namespaces", namespace)
    if ns["metadata"].get("deletionTimestamp"):
        err = forbidden(rt, name, f"unable to create new content in namespace {namespace} "
                                  f"because it is being terminated")
        err.causes.append(errors.Cause("metadata.namespace",
                                       f"namespace {namespace} is being terminated",
                                       "NamespaceTerminating"))
        raise err


class NamespaceStrategy(DefaultStrategy):
    def prepare_for_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        if subresource == "finalize":
            merged = deep_copy(old)
            merged.setdefault("spec", {})["finalizers"] = \
                (new.get("spec") or {}).get("finalizers") or []
            return merged
        new = super().prepare_for_update(new, old, subresource)
        if not subresource:
            finalizers = (old.get("spec") or {}).get("finalizers")
            spec = new.setdefault("spec", {})
            if finalizers is None:
                spec.pop("finalizers", None)
            else:
                spec["finalizers"] = list(finalizers)
        return new

    def admit_delete(self, name: str) -> None:
        if name in _IMMORTAL:
            raise forbidden(self.rt, name, "this namespace may not be deleted")

    def finalizing(self, obj: Obj) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def mark_deleting(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"
