"""The default RBAC policy every cluster starts with, after Kubernetes' bootstrap policy.

ClusterRoles: `cluster-admin` (everything), the user-facing `admin` ⊇ `edit` ⊇ `view`
for the core, apps, batch, autoscaling, policy, networking and discovery resources
(Kubernetes builds them by aggregation; here they are spelled out flat, and carry
the `aggregate-to-*` labels so `edit` and `admin` also pick up roles labelled for
them), `system:discovery`, `system:public-info-viewer` and `system:basic-user`.
ClusterRoleBindings tie them to `system:masters`, `system:authenticated` and
`system:unauthenticated` as Kubernetes does. The roles of the cluster's own components
(scheduler, controllers, nodes, proxy, DNS) and their bindings come from
`component_policy.py`.

`ensure_bootstrap_policy` creates what is missing and never touches what exists,
so an edited default role stays edited across restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from pinnace.api import errors
from pinnace.apiserver.component_policy import (
    component_cluster_role_bindings,
    component_cluster_roles,
)
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_ALL = _READ + _WRITE


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _urls(urls: list[str], verbs: list[str] | None = None) -> dict[str, Any]:
    return {"nonResourceURLs": urls, "verbs": verbs or ["get"]}


VIEW_RULES = [
    _rule([""], ["configmaps", "endpoints", "persistentvolumeclaims",
                 "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                 "replicationcontrollers/scale", "serviceaccounts", "services",
                 "services/status"], _READ),
    _rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log",
                 "pods/status", "replicationcontrollers/status", "resourcequotas",
                 "resourcequotas/status"], _READ),
    _rule([""], ["namespaces"], _READ),
    _rule(["discovery.k8s.io"], ["endpointslices"], _READ),
    _rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                     "deployments/scale", "deployments/status", "replicasets",
                     "replicasets/scale", "replicasets/status", "statefulsets",
                     "statefulsets/scale", "statefulsets/status"], _READ),
    _rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
          _READ),
    _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _READ),
    _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], _READ),
    _rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], _READ),
]

EDIT_RULES = [
    *VIEW_RULES,
    _rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
                 "services/proxy"], _READ),
    _rule([""], ["serviceaccounts"], ["impersonate"]),
    _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], _WRITE),
    _rule([""], ["pods/eviction"], ["create"]),
    _rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                 "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                 "services/proxy"], _WRITE),
    _rule([""], ["serviceaccounts/token"], ["create"]),
    _rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                     "replicasets", "replicasets/scale", "statefulsets",
                     "statefulsets/scale"], _WRITE),
    _rule(["autoscaling"], ["horizontalpodautoscalers"], _WRITE),
    _rule(["batch"], ["cronjobs", "jobs"], _WRITE),
    _rule(["policy"], ["poddisruptionbudgets"], _WRITE),
    _rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], _WRITE),
]

ADMIN_RULES = [
    *EDIT_RULES,
    _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    _rule([GROUP], ["rolebindings", "roles"], _ALL),
]


# what a node agent (kubelet, service proxy, DNS) needs, after Kubernetes' system:node
# role; bound to group system:nodes until a Node authorizer narrows it to the node's own
# objects (see the identity issue)
NODE_RULES = [
    _rule([""], ["nodes"], [*_READ, "create", "update", "patch", "delete"]),
    _rule([""], ["nodes/status", "pods/status", "persistentvolumeclaims/status"],
          ["patch", "update"]),
    _rule([""], ["pods"], [*_READ, "delete"]),
    _rule([""], ["events"], ["create", "patch", "update"]),
    _rule(["events.k8s.io"], ["events"], ["create", "patch", "update"]),
    _rule(["coordination.k8s.io"], ["leases"], [*_READ, "create", "update", "patch"]),
    _rule([""], ["secrets", "configmaps", "services", "endpoints", "namespaces",
                 "persistentvolumeclaims"], _READ),
    _rule([""], ["persistentvolumes"], [*_READ, "update", "patch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], _READ),
    _rule(["storage.k8s.io"], ["storageclasses"], _READ),
]


def _aggregated(to: str) -> dict[str, Any]:
    return {"clusterRoleSelectors": [
        {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{to}": "true"}}]}


# name -> (rules, extra labels, aggregationRule)
CLUSTER_ROLES: dict[str, tuple[list[dict[str, Any]], dict[str, str], dict[str, Any] | None]] = {
    "cluster-admin": ([_rule(["*"], ["*"], ["*"]), _urls(["*"], ["*"])], {}, None),
    "admin": (ADMIN_RULES, {}, _aggregated("admin")),
    "edit": (EDIT_RULES, {"rbac.authorization.k8s.io/aggregate-to-admin": "true"},
             _aggregated("edit")),
    "view": (VIEW_RULES, {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
             _aggregated("view")),
    "system:discovery": ([_urls(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                 "/openapi", "/openapi/*", "/readyz", "/version",
                                 "/version/"])], {}, None),
    "system:public-info-viewer": ([_urls(["/healthz", "/livez", "/readyz", "/version",
                                          "/version/"])], {}, None),
    "system:node": (NODE_RULES, {}, None),
    "system:basic-user": ([
        _rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
              ["create"]),
        _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
    ], {}, None),
    # ServiceAccounts may read the issuer's OIDC discovery document and keys
    "system:service-account-issuer-discovery": ([_urls([
        "/.well-known/openid-configuration", "/.well-known/openid-configuration/",
        "/openid/v1/jwks", "/openid/v1/jwks/"])], {}, None),
}


# the scheduler's, controllers', node's, proxy's and DNS's roles (component_policy.py)
CLUSTER_ROLES.update({name: (rules, {}, None)
                      for name, rules in component_cluster_roles().items()})


def _group(name: str) -> dict[str, str]:
    return {"apiGroup": GROUP, "kind": "Group", "name": name}


# binding name (= role name) -> subjects
CLUSTER_ROLE_BINDINGS: dict[str, list[dict[str, str]]] = {
    "cluster-admin": [_group("system:masters")],
    "system:discovery": [_group("system:authenticated")],
    "system:public-info-viewer": [_group("system:authenticated"),
                                  _group("system:unauthenticated")],
    "system:basic-user": [_group("system:authenticated")],
    "system:service-account-issuer-discovery": [_group("system:serviceaccounts")],
}
CLUSTER_ROLE_BINDINGS.update(component_cluster_role_bindings())


def _metadata(name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "labels": {**LABELS, **(extra_labels or {})},
            "annotations": dict(ANNOTATIONS)}


def cluster_roles() -> list[dict[str, Any]]:
    """The default ClusterRole objects."""
    out = []
    for name, (rules, labels, aggregation) in CLUSTER_ROLES.items():
        obj: dict[str, Any] = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                               "metadata": _metadata(name, labels), "rules": rules}
        if aggregation:
            obj["aggregationRule"] = aggregation
        out.append(obj)
    return out


def cluster_role_bindings() -> list[dict[str, Any]]:
    """The default ClusterRoleBinding objects."""
    return [{"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
             "metadata": _metadata(name),
             "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
             "subjects": subjects} for name, subjects in CLUSTER_ROLE_BINDINGS.items()]


async def ensure_bootstrap_policy(registry: ObjectRegistry) -> None:
    """Create every default role and binding that does not exist yet."""
    opts = WriteOptions(field_manager="pinnace")
    for kind, objects in (("ClusterRole", cluster_roles()),
                          ("ClusterRoleBinding", cluster_role_bindings())):
        rt = registry.kinds.by_kind(GROUP, "v1", kind)
        assert rt is not None
        cache = registry.cache(rt)
        for obj in objects:
            if cache.get(None, obj["metadata"]["name"]) is not None:
                continue
            try:
                await registry.create(rt, None, obj, opts)
            except errors.ApiError as e:
                if e.code != 409:  # another server got there first: fine
                    raise
