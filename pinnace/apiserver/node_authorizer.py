"""The Node authorizer: what a node's agent may read, decided by the pods bound to it.

Kubernetes' `--authorization-mode=Node,RBAC`: for a user `system:node:<name>` in
`system:nodes` this authorizer runs before RBAC.

    Secrets, ConfigMaps, PersistentVolumeClaims, PersistentVolumes:
        `get` only, and only of an object a pod bound to the node uses (volumes,
        projected sources, env and envFrom, imagePullSecrets; a claim's volume). Anything
        else is denied with Kubernetes' reason ("no relationship found between node …").
    persistentvolumeclaims/status: get/update/patch of such a claim (and, for pinnace's
        local-path volumes, of a claim bound to a volume with affinity to this node).
    serviceaccounts/token: create, for a ServiceAccount a pod bound to the node runs as.
    pods/eviction: create, of a pod bound to the node.
    everything else: allowed if `component_policy.NODE_RULES` (the `system:node` role)
        covers it; otherwise no opinion, and RBAC decides.

Which object belongs to whom comes from the pods watch cache: the graph Kubernetes keeps
is an index of the same facts. Here one pass over the pods gives a node's references,
kept until the next pod change. A reference counts whether or not the object exists yet (so a
missing optional Secret reads as 404, not 403). What a node may write is
`node_restriction.py`'s business (admission).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pinnace.apiserver.component_policy import NODE_RULES, node_name_of
from pinnace.apiserver.registry import ObjectRegistry

# (allowed, reason), or None: no opinion
Decision = tuple[bool, str] | None

_GRAPH_KINDS = {"secrets": "Secret", "configmaps": "ConfigMap",
                "persistentvolumeclaims": "PersistentVolumeClaim",
                "persistentvolumes": "PersistentVolume"}


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def pod_references(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap and claim the pod uses, in its namespace,
    and ("ServiceAccount", name) of the account it runs as."""
    spec = pod.get("spec") or {}
    yield "ServiceAccount", spec.get("serviceAccountName") or "default"
    for ref in spec.get("imagePullSecrets") or []:
        yield "Secret", ref.get("name") or ""
    for v in spec.get("volumes") or []:
        if v.get("secret"):
            yield "Secret", v["secret"].get("secretName") or ""
        if v.get("configMap"):
            yield "ConfigMap", v["configMap"].get("name") or ""
        if v.get("persistentVolumeClaim"):
            yield "PersistentVolumeClaim", v["persistentVolumeClaim"].get("claimName") or ""
        if v.get("ephemeral"):  # the claim the ephemeral volume controller makes
            yield "PersistentVolumeClaim", f"{pod['metadata']['name']}-{v.get('name')}"
        for source in (v.get("projected") or {}).get("sources") or []:
            if source.get("secret"):
                yield "Secret", source["secret"].get("name") or ""
            if source.get("configMap"):
                yield "ConfigMap", source["configMap"].get("name") or ""
        for plugin in ("csi", "cephfs", "rbd", "iscsi", "flexVolume", "azureFile"):
            ref = (v.get(plugin) or {}).get("nodePublishSecretRef") or \
                (v.get(plugin) or {}).get("secretRef")
            if ref and ref.get("name"):
                yield "Secret", ref["name"]
    for c in _containers(spec):
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            if source.get("secretKeyRef"):
                yield "Secret", source["secretKeyRef"].get("name") or ""
            if source.get("configMapKeyRef"):
                yield "ConfigMap", source["configMapKeyRef"].get("name") or ""
        for env_from in c.get("envFrom") or []:
            if env_from.get("secretRef"):
                yield "Secret", env_from["secretRef"].get("name") or ""
            if env_from.get("configMapRef"):
                yield "ConfigMap", env_from["configMapRef"].get("name") or ""


# what every node's local storage (agent/local_storage.py) lists and watches
_LOCAL_STORAGE_LISTS = frozenset({"persistentvolumes", "persistentvolumeclaims"})


class NodeAuthorizer:
    def __init__(self, registry: ObjectRegistry) -> None:
        kinds = registry.kinds
        self._pods = registry.cache(kinds.by_kind("", "v1", "Pod"))  # type: ignore[arg-type]
        self._claims = registry.cache(
            kinds.by_kind("", "v1", "PersistentVolumeClaim"))  # type: ignore[arg-type]
        self._volumes = registry.cache(
            kinds.by_kind("", "v1", "PersistentVolume"))  # type: ignore[arg-type]
        self._refs: dict[str, frozenset[tuple[str, str, str]]] = {}
        self._refs_at = -1

    def authorize(self, attrs: Any) -> Decision:
        """The decision for `attrs` (rbac.Attributes); None for users that are not nodes
        and for requests the node rules do not cover."""
        from pinnace.apiserver.rbac import rule_allows  # rbac runs this authorizer first
        node = node_name_of(attrs.user)
        if node is None:
            return None
        if attrs.resource_request and attrs.api_group == "":
            decision = self._graph(node, attrs)
            if decision is not None:
                return decision
        if any(rule_allows(attrs, r) for r in NODE_RULES):
            return True, ""
        return None

    def _graph(self, node: str, attrs: Any) -> Decision:
        resource, sub = attrs.resource, attrs.subresource
        if resource == "serviceaccounts" and sub == "token":
            if attrs.verb != "create":
                return False, "can only create tokens for individual service accounts"
            return self._related(node, attrs, "ServiceAccount")
        if resource == "pods" and sub == "eviction":
            pod = self._pods.get(attrs.namespace or None, attrs.name)
            if pod is not None and (pod.get("spec") or {}).get("nodeName") == node:
                return True, ""
            return False, f"node '{node}' can only evict pods bound to it"
        if resource == "persistentvolumeclaims" and sub == "status":
            if attrs.verb not in ("get", "update", "patch"):
                return False, "can only get, update or patch persistentvolumeclaim status"
            related = self._related(node, attrs, "PersistentVolumeClaim")
            if (related and related[0]) or self._local_claim(node, attrs):
                return True, ""
            return related
        kind = _GRAPH_KINDS.get(resource)
        if kind is None or sub:
            return None
        if resource in _LOCAL_STORAGE_LISTS and attrs.verb in ("list", "watch"):
            # no opinion, as Kubernetes' Node authorizer for all but `get`: RBAC decides
            # (the node's local-path half lists volumes and claims: see component_policy)
            return None
        if attrs.verb != "get" or not attrs.name:
            return False, "can only get individual resources of this type"
        return self._related(node, attrs, kind)

    def _related(self, node: str, attrs: Any, kind: str) -> Decision:
        if self._uses(node, attrs.namespace or None, kind, attrs.name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _references(self, node: str) -> frozenset[tuple[str, str, str]]:
        """(namespace, kind, name) of everything the node's pods use, kept until a pod
        changes (the cache's revision moves): an agent reads several objects per pod it
        starts, and one pass over the pods answers them all."""
        if self._pods.revision != self._refs_at:
            self._refs.clear()
            self._refs_at = self._pods.revision
        refs = self._refs.get(node)
        if refs is None:
            refs = self._refs[node] = frozenset(
                (pod["metadata"].get("namespace") or "", kind, name)
                for pod in self._pods.objects.values()
                if (pod.get("spec") or {}).get("nodeName") == node
                for kind, name in pod_references(pod))
        return refs

    def _uses(self, node: str, namespace: str | None, kind: str, name: str) -> bool:
        refs = self._references(node)
        if kind != "PersistentVolume":
            return (namespace or "", kind, name) in refs
        # a volume is reachable through a claim of one of the node's pods
        return any(k == "PersistentVolumeClaim" and
                   (claim := self._claims.get(ns, n)) is not None and
                   (claim.get("spec") or {}).get("volumeName") == name
                   for ns, k, n in refs)

    def _local_claim(self, node: str, attrs: Any) -> bool:
        """A claim bound to a volume pinned to this node (local-path storage, whose node
        agent reports the claim's grown capacity even when no pod uses it)."""
        claim = self._claims.get(attrs.namespace or None, attrs.name)
        volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
        volume = self._volumes.get(None, volume_name) if volume_name else None
        terms = ((((volume or {}).get("spec") or {}).get("nodeAffinity") or {})
                 .get("required") or {}).get("nodeSelectorTerms") or []
        return any(expr.get("key") == "kubernetes.io/hostname" and
                   expr.get("operator") == "In" and node in (expr.get("values") or [])
                   for term in terms for expr in term.get("matchExpressions") or [])
