"""Who the cluster's own components are, and the bootstrap roles that let them work.

Kubernetes runs its control plane as ordinary API users with roles, and so does pinnace,
even for the components that live in the API server's process (they reach the API through
`local.LocalTransport(user=…)`, authorized as a remote client is):

- scheduler: `system:kube-scheduler`, ClusterRoles `system:kube-scheduler` and
  `system:volume-scheduler`;
- the shared informers of the in-process components: `system:kube-controller-manager`,
  ClusterRole `system:kube-controller-manager` (it lists and watches everything);
- each controller (Kubernetes' `--use-service-account-credentials`): its ServiceAccount
  `system:serviceaccount:kube-system:<name>` (groups `system:serviceaccounts`,
  `system:serviceaccounts:kube-system`), ClusterRole `system:controller:<name>`;
- each node agent, real or simulated: `system:node:<node>` in `system:nodes`, no
  binding: the Node authorizer (`node_authorizer.py`) grants `NODE_RULES` (the
  `system:node` role) for its own objects, NodeRestriction narrows its writes;
- the service proxy: `system:kube-proxy`, ClusterRole `system:node-proxier`;
- the cluster DNS: `system:serviceaccount:kube-system:coredns`, ClusterRole
  `system:coredns`.

Every user here is also in `system:authenticated`. The rules follow Kubernetes'
bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), trimmed to the
kinds pinnace serves, and widened only where a pinnace component writes differently
(noted at the rule). The names of the controllers are Kubernetes' own (`daemon-set-
controller`, `generic-garbage-collector`, …); pinnace's own controllers (local-path
provisioner) follow the same pattern.
"""

from __future__ import annotations

from typing import Any

from pinnace.apiserver.auth import AUTHENTICATED, User
from pinnace.apiserver.discovery import GIT_VERSION, version_info

CORE, APPS, BATCH, EVENTS = "", "apps", "batch", "events.k8s.io"
COORDINATION, DISCOVERY, STORAGE = "coordination.k8s.io", "discovery.k8s.io", "storage.k8s.io"
POLICY, RBAC = "policy", "rbac.authorization.k8s.io"
_READ = ["get", "list", "watch"]

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
CONTROLLER_ROLE_PREFIX = "system:controller:"
SYSTEM_NAMESPACE = "kube-system"

SCHEDULER = User("system:kube-scheduler", (AUTHENTICATED,))
CONTROLLER_MANAGER = User("system:kube-controller-manager", (AUTHENTICATED,))
KUBE_PROXY = User("system:kube-proxy", (AUTHENTICATED,))


def service_account_user(namespace: str, name: str) -> User:
    """A ServiceAccount as the authenticator presents it."""
    return User(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                 AUTHENTICATED))


def controller_user(name: str) -> User:
    """A controller of the controller manager: its ServiceAccount in kube-system."""
    return service_account_user(SYSTEM_NAMESPACE, name)


def node_user(node_name: str) -> User:
    """A node's agent."""
    return User(f"{NODE_USER_PREFIX}{node_name}", (NODES_GROUP, AUTHENTICATED))


def node_name_of(user: Any) -> str | None:
    """The node a user speaks for (`system:node:<name>` in `system:nodes`), else None."""
    if user is None or NODES_GROUP not in user.groups or \
            not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):] or None


DNS = service_account_user(SYSTEM_NAMESPACE, "coredns")


def user_agent(user: User | None) -> str:
    """The userAgent an in-process component's requests are logged with, shaped like
    Kubernetes' (`kube-scheduler/v1.32.0 (linux/amd64) …`; a controller with its own
    credentials appends its name to the controller manager's, as client-go's
    AddUserAgent does). A caller without a user is the API server itself."""
    name = user.name if user is not None else ""
    suffix = ""
    if user is None:
        component = "kube-apiserver"
    elif node_name_of(user) is not None:
        component = "kubelet"
    elif user == DNS:
        component = "coredns"
    elif name.startswith(f"{SERVICE_ACCOUNT_PREFIX}{SYSTEM_NAMESPACE}:"):
        component, suffix = "kube-controller-manager", "/" + name.rsplit(":", 1)[1]
    elif name.startswith("system:kube-"):
        component = name[len("system:"):]
    else:
        component, suffix = "pinnace", "/" + name
    return f"{component}/{GIT_VERSION} ({version_info()['platform']}) pinnace{suffix}"


def _r(verbs: list[str], groups: list[str], resources: list[str],
       names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _events() -> dict[str, Any]:
    return _r(["create", "update", "patch"], [CORE, EVENTS], ["events"])


# What a node may do; the Node authorizer grants these itself (as Kubernetes' does with
# its copy of the `system:node` role), after limiting secrets, configmaps, claims,
# volumes and token requests to what its own pods use.
NODE_RULES = [
    _r(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    _r(["create"], ["authorization.k8s.io"], ["subjectaccessreviews",
                                              "localsubjectaccessreviews"]),
    _r(_READ, [CORE], ["services"]),
    _r(["create", *_READ], [CORE], ["nodes"]),
    _r(["update", "patch"], [CORE], ["nodes/status"]),
    _r(["update", "patch"], [CORE], ["nodes"]),
    _events(),
    _r(_READ, [CORE], ["pods"]),
    _r(["create", "delete"], [CORE], ["pods"]),  # mirror pods; finishing its own pods
    _r(["update", "patch"], [CORE], ["pods/status"]),
    _r(["create"], [CORE], ["pods/eviction"]),
    _r(["get"], [CORE], ["secrets", "configmaps", "persistentvolumeclaims",
                         "persistentvolumes"]),
    _r(["get", "update", "patch"], [CORE], ["persistentvolumeclaims/status"]),
    _r(["create"], [CORE], ["serviceaccounts/token"]),
    _r(["create", *_READ], ["certificates.k8s.io"], ["certificatesigningrequests"]),
    _r(["get", "create", "update", "patch", "delete"], [COORDINATION], ["leases"]),
    _r(_READ, [STORAGE], ["csidrivers", "csinodes"]),
    _r(_READ, ["node.k8s.io"], ["runtimeclasses"]),
]

_COMPONENT_ROLES: dict[str, list[dict[str, Any]]] = {
    "system:kube-scheduler": [
        _events(),
        _r(["create"], [COORDINATION], ["leases"]),
        _r(["get", "update"], [COORDINATION], ["leases"], ["kube-scheduler"]),
        _r(_READ, [CORE], ["nodes"]),
        _r(["get", "list", "watch", "delete"], [CORE], ["pods"]),
        _r(["create"], [CORE], ["bindings", "pods/binding"]),
        _r(["patch", "update"], [CORE], ["pods/status"]),
        _r(["list", "watch"], [CORE], ["replicationcontrollers", "services", "namespaces",
                                       "persistentvolumeclaims", "persistentvolumes"]),
        _r(["list", "watch"], [APPS], ["replicasets", "statefulsets"]),
        _r(["list", "watch"], [POLICY], ["poddisruptionbudgets"]),
        _r(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _r(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        _r(_READ, [STORAGE], ["csinodes", "csidrivers", "csistoragecapacities"]),
    ],
    "system:volume-scheduler": [
        _r(["get", "list", "watch", "patch", "update"], [CORE], ["persistentvolumes"]),
        _r(_READ, [STORAGE], ["storageclasses"]),
        _r(["get", "list", "watch", "patch", "update"], [CORE], ["persistentvolumeclaims"]),
    ],
    "system:kube-controller-manager": [
        _events(),
        _r(["create"], [COORDINATION], ["leases"]),
        _r(["get", "update"], [COORDINATION], ["leases"], ["kube-controller-manager"]),
        _r(["create", "delete", "get", "update"], [CORE], ["secrets"]),
        _r(["create", "get", "update"], [CORE], ["serviceaccounts"]),
        _r(["create"], [CORE], ["serviceaccounts/token"]),
        _r(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _r(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        # the shared informers list and watch everything
        _r(["list", "watch"], ["*"], ["*"]),
        _r(["get"], [CORE], ["namespaces"]),
    ],
    "system:node-proxier": [
        _r(["list", "watch"], [CORE], ["services", "endpoints"]),
        _r(_READ, [CORE], ["nodes"]),
        _events(),
        _r(["list", "watch"], [DISCOVERY], ["endpointslices"]),
    ],
    # not in Kubernetes' bootstrap policy: what a node's half of local-path storage
    # (agent/local_storage.py) watches to make, grow and remove its volumes — the reads
    # k3s' local-path-provisioner has; bound to every node below
    "system:pinnace:node-local-storage": [
        _r(["list", "watch"], [CORE], ["persistentvolumes", "persistentvolumeclaims"]),
    ],
    # not in Kubernetes' bootstrap policy: the role kubeadm and k3s give CoreDNS
    "system:coredns": [
        _r(["list", "watch"], [CORE], ["endpoints", "services", "pods", "namespaces"]),
        _r(["list", "watch"], [DISCOVERY], ["endpointslices"]),
    ],
}

# user -> the component roles bound to it (binding name = role name, as Kubernetes)
_COMPONENT_BINDINGS: dict[str, tuple[str, ...]] = {
    "system:kube-scheduler": (SCHEDULER.name,),
    "system:volume-scheduler": (SCHEDULER.name,),
    "system:kube-controller-manager": (CONTROLLER_MANAGER.name,),
    "system:node-proxier": (KUBE_PROXY.name,),
}

# controller (its ServiceAccount in kube-system) -> rules of system:controller:<name>
CONTROLLER_RULES: dict[str, list[dict[str, Any]]] = {
    "replicaset-controller": [
        _r(["get", "list", "watch", "update"], [APPS], ["replicasets"]),
        _r(["update", "patch"], [APPS], ["replicasets/status", "replicasets/finalizers"]),
        _r(["list", "watch", "patch", "create", "delete"], [CORE], ["pods"]),
        _events(),
    ],
    "deployment-controller": [
        _r(["get", "list", "watch", "update", "patch"], [APPS], ["deployments"]),
        _r(["update", "patch"], [APPS], ["deployments/status", "deployments/finalizers"]),
        _r(["get", "list", "watch", "create", "update", "patch", "delete"], [APPS],
           ["replicasets"]),
        _r(["get", "list", "watch", "update"], [CORE], ["pods"]),
        _events(),
    ],
    "job-controller": [
        _r(["get", "list", "watch", "update", "patch"], [BATCH], ["jobs"]),
        _r(["update", "patch"], [BATCH], ["jobs/status", "jobs/finalizers"]),
        _r(["list", "watch", "create", "delete", "patch"], [CORE], ["pods"]),
        _events(),
    ],
    "ttl-after-finished-controller": [
        _r(["get", "list", "watch", "delete"], [BATCH], ["jobs"]),
        _events(),
    ],
    "cronjob-controller": [
        _r(["get", "list", "watch", "update", "patch"], [BATCH], ["cronjobs"]),
        _r(["get", "list", "watch", "create", "update", "delete", "patch"], [BATCH],
           ["jobs"]),
        _r(["update", "patch"], [BATCH], ["cronjobs/status", "cronjobs/finalizers"]),
        _r(["list", "watch", "delete"], [CORE], ["pods"]),
        _events(),
    ],
    "daemon-set-controller": [
        _r(_READ, [APPS], ["daemonsets"]),
        _r(["update", "patch"], [APPS], ["daemonsets/status", "daemonsets/finalizers"]),
        _r(["list", "watch"], [CORE], ["nodes"]),
        _r(["list", "watch", "create", "delete", "patch"], [CORE], ["pods"]),
        _r(["create"], [CORE], ["pods/binding"]),
        _r(["get", "list", "watch", "create", "delete", "update", "patch"], [APPS],
           ["controllerrevisions"]),
        _events(),
    ],
    "statefulset-controller": [
        _r(["list", "watch"], [CORE], ["pods"]),
        _r(_READ, [APPS], ["statefulsets"]),
        _r(["update", "patch"], [APPS], ["statefulsets/status", "statefulsets/finalizers"]),
        _r(["get", "create", "delete", "update", "patch"], [CORE], ["pods"]),
        _r(["get", "create", "delete", "update", "patch", "list", "watch"], [APPS],
           ["controllerrevisions"]),
        _r(["get", "create", "list", "watch", "update", "patch", "delete"], [CORE],
           ["persistentvolumeclaims"]),
        _r(["update"], [CORE], ["pods/finalizers"]),
        _events(),
    ],
    "generic-garbage-collector": [
        _r(["get", "list", "watch", "patch", "update", "delete"], ["*"], ["*"]),
        _events(),
    ],
    "namespace-controller": [
        _r(["get", "list", "watch", "delete"], [CORE], ["namespaces"]),
        _r(["update", "patch"], [CORE], ["namespaces/finalize", "namespaces/status"]),
        _r(["get", "list", "watch", "delete", "deletecollection"], ["*"], ["*"]),
    ],
    "pod-garbage-collector": [
        _r(["list", "watch", "delete"], [CORE], ["pods"]),
        _r(_READ, [CORE], ["nodes"]),
        _r(["patch", "update"], [CORE], ["pods/status"]),
    ],
    "service-account-controller": [
        _r(["create"], [CORE], ["serviceaccounts"]),
        _events(),
    ],
    "endpointslice-controller": [
        _r(_READ, [CORE], ["services", "pods", "nodes"]),
        _r(["update"], [CORE], ["services/finalizers"]),
        _r(["get", "list", "watch", "create", "update", "patch", "delete"], [DISCOVERY],
           ["endpointslices"]),
        _events(),
    ],
    "endpoint-controller": [
        _r(_READ, [CORE], ["services", "pods"]),
        _r(["get", "list", "watch", "create", "update", "patch", "delete"], [CORE],
           ["endpoints"]),
        _r(["create"], [CORE], ["endpoints/restricted"]),
        _events(),
    ],
    "endpointslicemirroring-controller": [
        _r(_READ, [CORE], ["services", "endpoints"]),
        _r(["update"], [CORE], ["services/finalizers", "endpoints/finalizers"]),
        _r(["get", "list", "watch", "create", "update", "patch", "delete"], [DISCOVERY],
           ["endpointslices"]),
        _events(),
    ],
    # Kubernetes' cloud service controller; here the LoadBalancer address allocator
    "service-controller": [
        _r(_READ, [CORE], ["services"]),
        _r(["patch", "update"], [CORE], ["services/status"]),
        _r(["list", "watch"], [CORE], ["nodes"]),
        _events(),
    ],
    "node-controller": [
        _r(["get", "list", "watch", "update", "delete", "patch"], [CORE], ["nodes"]),
        _r(["patch", "update"], [CORE], ["nodes/status"]),
        _r(["patch", "update"], [CORE], ["pods/status"]),
        _r(["list", "watch", "get", "delete"], [CORE], ["pods"]),
        _r(["create"], [CORE], ["pods/eviction"]),
        _events(),
    ],
    "persistent-volume-binder": [
        _r(["get", "list", "watch", "update", "patch", "create", "delete"], [CORE],
           ["persistentvolumes"]),
        _r(["update", "patch"], [CORE], ["persistentvolumes/status"]),
        _r(["get", "list", "watch", "update", "patch"], [CORE], ["persistentvolumeclaims"]),
        _r(["update", "patch"], [CORE], ["persistentvolumeclaims/status"]),
        _r(["list", "watch", "get", "create", "delete"], [CORE], ["pods"]),
        _r(_READ, [STORAGE], ["storageclasses"]),
        _r(["list", "watch"], [CORE], ["nodes"]),
        _events(),
        _r(["watch"], [CORE], ["events"]),
    ],
    "pvc-protection-controller": [
        _r(["get", "list", "watch", "update", "patch"], [CORE], ["persistentvolumeclaims"]),
        _r(["list", "watch", "get"], [CORE], ["pods"]),
        _events(),
    ],
    "pv-protection-controller": [
        _r(["get", "list", "watch", "update", "patch"], [CORE], ["persistentvolumes"]),
        _events(),
    ],
    # the kube-root-ca.crt publisher (for controllers that publish it; the ServiceAccount
    # token controller, as in Kubernetes, acts as system:kube-controller-manager)
    "root-ca-cert-publisher": [
        _r(["create", "update"], [CORE], ["configmaps"]),
        _events(),
    ],
    # pinnace's (k3s') local-path provisioner: makes and removes local PVs for claims
    "local-path-provisioner": [
        _r(_READ, [CORE], ["nodes", "pods"]),
        _r(["get", "list", "watch", "create", "update", "patch", "delete"], [CORE],
           ["persistentvolumes"]),
        _r(["get", "list", "watch", "update", "patch"], [CORE],
           ["persistentvolumeclaims", "persistentvolumeclaims/status"]),
        # it installs its StorageClass (`local-path`) at start
        _r([*_READ, "create", "update", "patch"], [STORAGE], ["storageclasses"]),
        _events(),
    ],
}


def component_cluster_roles() -> dict[str, list[dict[str, Any]]]:
    """ClusterRole name -> rules, for every component role."""
    roles = dict(_COMPONENT_ROLES)
    roles["system:node"] = NODE_RULES  # bound to nobody: the Node authorizer applies it
    for name, rules in CONTROLLER_RULES.items():
        roles[CONTROLLER_ROLE_PREFIX + name] = rules
    return roles


def component_cluster_role_bindings() -> dict[str, list[dict[str, str]]]:
    """ClusterRoleBinding name (= its role's) -> subjects, for every component role."""
    bindings: dict[str, list[dict[str, str]]] = {
        role: [{"apiGroup": RBAC, "kind": "User", "name": user} for user in users]
        for role, users in _COMPONENT_BINDINGS.items()}
    bindings["system:coredns"] = [{"kind": "ServiceAccount", "name": "coredns",
                                   "namespace": SYSTEM_NAMESPACE}]
    # a joined agent runs its node's service proxy and DNS under the node's own
    # credential (k3s gives every agent a kube-proxy identity to the same effect): every
    # node may read what those two read, all of which kube-proxy reads on any node anyway
    nodes = {"apiGroup": RBAC, "kind": "Group", "name": NODES_GROUP}
    bindings["system:node-proxier"] = [*bindings.get("system:node-proxier", []), nodes]
    bindings["system:coredns"].append(nodes)
    bindings["system:pinnace:node-local-storage"] = [nodes]
    for name in CONTROLLER_RULES:
        bindings[CONTROLLER_ROLE_PREFIX + name] = [
            {"kind": "ServiceAccount", "name": name, "namespace": SYSTEM_NAMESPACE}]
    return bindings
