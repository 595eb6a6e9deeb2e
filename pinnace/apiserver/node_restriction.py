"""NodeRestriction admission: what a node's agent may write.

The Node authorizer (`node_authorizer.py`) lets a node write nodes, pods' status, leases
and the like at all; this plugin narrows each write to the node's own objects, with
Kubernetes' messages (403 Forbidden, `<resource> "<name>" is forbidden: …`):

- Node: only its own (create, update, status, delete); no labels under
  `node-restriction.kubernetes.io/` ever, and on update no other `kubernetes.io`/`k8s.io`
  label than the kubelet's own; no change to its taints.
- Pod: create only a mirror pod bound to itself (with no ServiceAccount, Secret,
  ConfigMap or claim); delete only pods bound to it; status only of pods bound to it,
  labels unchanged; nothing else.
- Lease: only its own, in `kube-node-lease`.
- PersistentVolumeClaim: status only, and only `status.capacity` and conditions.
- ServiceAccount token: only bound to a pod of this node (uid checked).

Users that are not nodes, and trusted callers in this process, pass untouched.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.apiserver.admission_chain import Attributes
from pinnace.apiserver.component_policy import node_name_of
from pinnace.apiserver.registry import ObjectRegistry

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
LEASE_NAMESPACE = "kube-node-lease"
RESTRICTED_LABEL_DOMAIN = "node-restriction.kubernetes.io"
# the labels a kubelet sets on its Node (Kubernetes' kubeletapis.IsKubeletLabel)
_KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
    "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone"})
_KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _domain(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _in(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def _modified_labels(new: dict[str, str], old: dict[str, str]) -> set[str]:
    return {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}


def forbidden_labels(new: dict[str, str], old: dict[str, str] | None) -> list[str]:
    """The label keys a node may not set: node-restriction ones always, and on update
    (old given) any kubernetes.io or k8s.io label that is not a kubelet's."""
    out = []
    for key in _modified_labels(new, old or {}):
        domain = _domain(key)
        if _in(domain, RESTRICTED_LABEL_DOMAIN):
            out.append(key)
        elif old is not None and (_in(domain, "kubernetes.io") or _in(domain, "k8s.io")) \
                and key not in _KUBELET_LABELS and \
                not any(_in(domain, d) for d in _KUBELET_LABEL_DOMAINS):
            out.append(key)
    return sorted(out)


def _refuse(attrs: Attributes, message: str) -> errors.ApiError:
    resource = attrs.rt.plural if not attrs.rt.group else f"{attrs.rt.plural}.{attrs.rt.group}"
    return errors.ApiError(403, "Forbidden", f'{resource} "{attrs.name}" is forbidden: '
                           f"{message}", name=attrs.name, group=attrs.rt.group,
                           kind=attrs.rt.plural)


def _labels(obj: Any) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _node_of(pod: Any) -> str:
    return ((pod or {}).get("spec") or {}).get("nodeName") or ""


class NodeRestriction:
    """The admission plugin (`registry.admission`); it only refuses, in `validate`."""

    def __init__(self, registry: ObjectRegistry) -> None:
        self._pods = registry.cache(registry.kinds.by_kind("", "v1", "Pod"))  # type: ignore

    async def mutate(self, attrs: Attributes) -> None:
        return None

    async def validate(self, attrs: Attributes) -> None:
        node = node_name_of(attrs.user)
        if node is None or attrs.rt.group not in ("", "coordination.k8s.io"):
            return
        check = {"Pod": self._pod, "Node": self._node, "Lease": self._lease,
                 "PersistentVolumeClaim": self._claim,
                 "ServiceAccount": self._token}.get(attrs.rt.kind)
        if check is not None:
            check(node, attrs)

    def _pod(self, node: str, attrs: Attributes) -> None:
        op, sub = attrs.operation, attrs.subresource
        if sub == "status":
            if op != "UPDATE":
                raise _refuse(attrs, f'unexpected operation "{op}"')
            if _node_of(attrs.old) != node:
                raise _refuse(attrs, f'node "{node}" can only update pod status for pods '
                              f"with spec.nodeName set to itself")
            if _labels(attrs.obj) != _labels(attrs.old):
                raise _refuse(attrs, f'node "{node}" cannot update labels through pod status')
            return
        if sub:
            raise _refuse(attrs, f"unexpected pod subresource \"{sub}\", only 'status' and "
                          f"'eviction' are allowed")
        if op == "DELETE":
            if _node_of(attrs.old) != node:
                raise _refuse(attrs, f'node "{node}" can only delete pods with '
                              f"spec.nodeName set to itself")
            return
        if op != "CREATE":
            raise _refuse(attrs, f'unexpected operation "{op}", node "{node}" can only '
                          f"create and delete mirror pods")
        pod = attrs.obj or {}
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if MIRROR_POD_ANNOTATION not in annotations:
            raise _refuse(attrs, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, '
                          f'node "{node}" can only create mirror pods')
        if _node_of(pod) != node:
            raise _refuse(attrs, f'node "{node}" can only create pods with spec.nodeName '
                          f"set to itself")
        from pinnace.apiserver.node_authorizer import pod_references
        # a mirror pod must not reach other objects (the defaulted ServiceAccount aside)
        spec = pod.get("spec") or {}
        if spec.get("serviceAccountName") and spec["serviceAccountName"] != "default":
            raise _refuse(attrs, f'node "{node}" can not create pods that reference a '
                          f"service account")
        for kind, plural in (("Secret", "secrets"), ("ConfigMap", "configmaps"),
                             ("PersistentVolumeClaim", "persistentvolumeclaims")):
            if any(k == kind for k, _ in pod_references(pod)):
                raise _refuse(attrs, f'node "{node}" can not create pods that reference '
                              f"{plural}")

    def _node(self, node: str, attrs: Attributes) -> None:
        if attrs.operation == "CREATE":
            bad = forbidden_labels(_labels(attrs.obj), None)
            if bad:
                raise _refuse(attrs, f'node "{node}" is not allowed to set the following '
                              f"labels: {', '.join(bad)}")
        if attrs.name != node:
            raise _refuse(attrs, f'node "{node}" is not allowed to modify node '
                          f'"{attrs.name}"')
        if attrs.operation == "UPDATE":
            new_spec = (attrs.obj or {}).get("spec") or {}
            old_spec = (attrs.old or {}).get("spec") or {}
            if (new_spec.get("taints") or []) != (old_spec.get("taints") or []):
                raise _refuse(attrs, f'node "{node}" is not allowed to modify taints')
            bad = forbidden_labels(_labels(attrs.obj), _labels(attrs.old))
            if bad:
                raise _refuse(attrs, f"is not allowed to modify labels: {', '.join(bad)}")

    def _lease(self, node: str, attrs: Attributes) -> None:
        if attrs.namespace != LEASE_NAMESPACE:
            raise _refuse(attrs, f'can only access leases in the "{LEASE_NAMESPACE}" '
                          f"system namespace")
        if attrs.name != node:
            raise _refuse(attrs, "can only access node lease with the same name as the "
                          "requesting node")

    def _claim(self, node: str, attrs: Attributes) -> None:
        if attrs.subresource != "status":
            raise _refuse(attrs, "may only update PVC status")
        if attrs.operation != "UPDATE":
            raise _refuse(attrs, f'unexpected operation "{attrs.operation}"')

        def rest(obj: Any) -> Any:
            obj = dict(obj or {})
            meta = {k: v for k, v in (obj.get("metadata") or {}).items()
                    if k not in ("resourceVersion", "managedFields")}
            status = {k: v for k, v in (obj.get("status") or {}).items()
                      if k not in ("capacity", "conditions")}
            return {**obj, "metadata": meta, "status": status}
        if rest(attrs.obj) != rest(attrs.old):
            raise _refuse(attrs, f'node "{node}" is not allowed to update fields other '
                          f"than status.capacity and status.conditions")

    def _token(self, node: str, attrs: Attributes) -> None:
        if attrs.subresource != "token" or attrs.operation != "CREATE":
            return
        ref = ((attrs.obj or {}).get("spec") or {}).get("boundObjectRef") or {}
        if ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
            raise _refuse(attrs, "node requested token not bound to a pod")
        if not ref.get("uid"):
            raise _refuse(attrs, "node requested token with a pod binding without a uid")
        pod = self._pods.get(attrs.namespace, ref["name"])
        if pod is None:
            raise errors.not_found("pods", ref["name"])
        uid = pod["metadata"].get("uid")
        if ref["uid"] != uid:
            raise _refuse(attrs, f"the UID in the bound object reference ({ref['uid']}) "
                          f"does not match the UID in record ({uid}). The object might "
                          f"have been deleted and then recreated")
        if _node_of(pod) != node:
            raise _refuse(attrs, "node requested token bound to a pod scheduled on a "
                          "different node")
