"""The kinds registry: every resource type pinnace serves, and how it is named.

One `ResourceType` per (group, version, plural). Everything that needs to know
about a kind — the REST routes, discovery, OpenAPI, validation, the store key
layout, kubectl's short names, the fields it can be selected by — reads it from
here, so adding a kind is one entry in `_KINDS`.

Field selectors: a kind with `selectable_fields` supports exactly the paths listed
there (Kubernetes' per-kind `ToSelectableFields`), each read from an object by its
getter; a kind without supports `metadata.name` and `metadata.namespace` only.
`pinnace.api.selectors` parses and matches selectors against these tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# Reads one selectable field of an object, as text ("true"/"false" for booleans);
# None when the object has no value for it (it then matches as "").
FieldGetter = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class SelectableFields:
    """The field-selector paths of a kind and how to read them."""

    fields: Mapping[str, FieldGetter]
    # old names clients still send, e.g. a Pod's `spec.host` for `spec.nodeName`
    aliases: Mapping[str, str] = field(default_factory=dict)


# eq=False: each type is a singleton in the registry, hashed by identity
@dataclass(frozen=True, eq=False)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # subresource name -> the kind it speaks ("" means the parent kind itself)
    subresources: dict[str, str] = field(default_factory=dict)
    verbs: tuple[str, ...] = VERBS_ALL
    # definition name in the Kubernetes OpenAPI schemas
    schema_ref: str = ""
    # the store prefix is shared between kinds that Kubernetes stores together
    storage_plural: str = ""
    # field selectors beyond metadata.name/namespace (None: only those two)
    selectable_fields: SelectableFields | None = None
    # names a CustomResourceDefinition sets where built-in kinds derive them
    singular_name: str = ""
    list_kind_name: str = ""
    # a custom resource's served version (`pinnace.api.crd.CustomVersion`: schema,
    # printer columns, scale paths); None for built-in kinds
    custom: Any = None

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or self.kind + "List"

    @property
    def storage_group(self) -> str:
        return self.group or "core"

    def key_prefix(self, namespace: str | None = None) -> str:
        """Store prefix for all objects of this type (in one namespace if given)."""
        base = f"/registry/{self.storage_group}/{self.storage_plural or self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix()}{namespace}/{name}"
        return f"{self.key_prefix()}{name}"

    def url_path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = root
        if self.namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        if name:
            path += f"/{name}"
        return path


def _core(kind: str, **kw) -> ResourceType:
    return _make("", "v1", "core", kind, **kw)


def _make(group: str, version: str, schema_group: str, kind: str, *, plural: str = "",
          namespaced: bool = True, short: tuple[str, ...] = (), cats: tuple[str, ...] = (),
          subs: dict[str, str] | None = None, verbs: tuple[str, ...] = VERBS_ALL,
          storage_plural: str = "", fields: SelectableFields | None = None) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural or kind.lower() + "s",
        namespaced=namespaced,
        short_names=short,
        categories=cats,
        subresources=subs or {},
        verbs=verbs,
        schema_ref=f"io.k8s.api.{schema_group}.{version}.{kind}",
        storage_plural=storage_plural,
        selectable_fields=fields,
    )


# -- selectable fields --------------------------------------------------------------------

def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _at(path: str, *, default: Any = None, as_bool: bool = False) -> FieldGetter:
    """A getter for a dotted path; as_bool reads a missing value as false."""
    parts = path.split(".")

    def get(obj: Mapping[str, Any]) -> str:
        node: Any = obj
        for part in parts:
            node = node.get(part) if isinstance(node, Mapping) else None
        if as_bool:
            return _text(bool(node))
        if not node and default is not None:  # `status.replicas` of a new object: 0
            node = default
        return _text(node)
    return get


def selectable_paths(paths: list[str], *, namespaced: bool) -> SelectableFields:
    """The field-selector table of a custom resource: metadata.name (and namespace) and
    the dotted paths its definition's `selectableFields` name."""
    return _selectable({p: _at(p) for p in paths}, namespaced=namespaced)


def _namespace(obj: Mapping[str, Any]) -> str | None:
    ns = (obj.get("metadata") or {}).get("namespace")
    return _text(ns) if ns else None


def _pod_ip(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    ips = status.get("podIPs") or []
    return _text(ips[0].get("ip") if ips else status.get("podIP"))


def _event_source(obj: Mapping[str, Any]) -> str:
    return _text((obj.get("source") or {}).get("component") or obj.get("reportingComponent"))


def _none(_obj: Mapping[str, Any]) -> None:
    return None


def _selectable(fields: dict[str, FieldGetter], *, namespaced: bool = True,
                aliases: dict[str, str] | None = None) -> SelectableFields:
    meta: dict[str, FieldGetter] = {"metadata.name": _at("metadata.name")}
    if namespaced:
        meta["metadata.namespace"] = _namespace
    return SelectableFields({**meta, **fields}, aliases or {})


_POD_FIELDS = _selectable({
    "spec.nodeName": _at("spec.nodeName"), "spec.restartPolicy": _at("spec.restartPolicy"),
    "spec.schedulerName": _at("spec.schedulerName"),
    "spec.serviceAccountName": _at("spec.serviceAccountName"),
    "spec.hostNetwork": _at("spec.hostNetwork", as_bool=True),
    "status.phase": _at("status.phase"), "status.podIP": _pod_ip,
    # accepted in a selector, never set: matches as ""
    "status.podIPs": _none,
    "status.nominatedNodeName": _at("status.nominatedNodeName")},
    aliases={"spec.host": "spec.nodeName"})
_EVENT_FIELDS = _selectable({
    **{f"involvedObject.{f}": _at(f"involvedObject.{f}") for f in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": _at("reason"), "reportingComponent": _at("reportingComponent"),
    "source": _event_source, "type": _at("type")})
_REPLICAS_FIELDS = _selectable({"status.replicas": _at("status.replicas", default=0)})


_SCALE = "autoscaling/v1:Scale"

_KINDS: tuple[ResourceType, ...] = (
    _core("Namespace", namespaced=False, short=("ns",),
          subs={"status": "", "finalize": ""},
          fields=_selectable({"status.phase": _at("status.phase")}, namespaced=False)),
    _core("Node", namespaced=False, short=("no",),
          subs={"status": "", "proxy": "NodeProxyOptions"},
          fields=_selectable({"spec.unschedulable": _at("spec.unschedulable", as_bool=True)},
                             namespaced=False)),
    _core("Pod", short=("po",), cats=("all",),
          subs={"status": "", "binding": "Binding", "log": "Pod", "exec": "PodExecOptions",
                "eviction": "policy/v1:Eviction", "attach": "PodAttachOptions",
                "portforward": "PodPortForwardOptions", "ephemeralcontainers": ""},
          fields=_POD_FIELDS),
    _core("ConfigMap", short=("cm",)),
    _core("Secret", fields=_selectable({"type": _at("type")})),
    _core("Service", short=("svc",), cats=("all",), subs={"status": "",
                                                         "proxy": "ServiceProxyOptions"},
          fields=_selectable({"spec.clusterIP": _at("spec.clusterIP"),
                              "spec.type": _at("spec.type")})),
    _core("Endpoints", plural="endpoints", short=("ep",)),
    _core("PersistentVolume", namespaced=False, short=("pv",), subs={"status": ""}),
    _core("PersistentVolumeClaim", short=("pvc",), subs={"status": ""}),
    _core("ServiceAccount", short=("sa",), subs={"token": "authentication.k8s.io/v1:TokenRequest"}),
    _core("Event", short=("ev",), fields=_EVENT_FIELDS),
    _core("Binding", verbs=("create",)),
    _core("ReplicationController", short=("rc",), cats=("all",),
          subs={"status": "", "scale": _SCALE}, fields=_REPLICAS_FIELDS),
    _core("PodTemplate"),
    _core("LimitRange", short=("limits",)),
    _core("ResourceQuota", short=("quota",), subs={"status": ""}),
    _make("apps", "v1", "apps", "Deployment", short=("deploy",), cats=("all",),
          subs={"status": "", "scale": _SCALE}),
    _make("apps", "v1", "apps", "ReplicaSet", short=("rs",), cats=("all",),
          subs={"status": "", "scale": _SCALE}, fields=_REPLICAS_FIELDS),
    _make("apps", "v1", "apps", "DaemonSet", short=("ds",), cats=("all",), subs={"status": ""}),
    _make("apps", "v1", "apps", "StatefulSet", short=("sts",), cats=("all",),
          subs={"status": "", "scale": _SCALE}),
    _make("apps", "v1", "apps", "ControllerRevision"),
    _make("batch", "v1", "batch", "Job", cats=("all",), subs={"status": ""},
          fields=_selectable({"status.successful": _at("status.succeeded", default=0)})),
    _make("batch", "v1", "batch", "CronJob", short=("cj",), cats=("all",), subs={"status": ""}),
    _make("storage.k8s.io", "v1", "storage", "StorageClass", namespaced=False, short=("sc",),
          plural="storageclasses"),
    _make("discovery.k8s.io", "v1", "discovery", "EndpointSlice"),
    _make("coordination.k8s.io", "v1", "coordination", "Lease"),
    # events.k8s.io/v1 Event is stored apart from core/v1 Event: pinnace does not convert
    # between the two shapes.
    _make("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _make("rbac.authorization.k8s.io", "v1", "rbac", "Role"),
    _make("rbac.authorization.k8s.io", "v1", "rbac", "RoleBinding"),
    _make("rbac.authorization.k8s.io", "v1", "rbac", "ClusterRole", namespaced=False),
    _make("rbac.authorization.k8s.io", "v1", "rbac", "ClusterRoleBinding", namespaced=False),
    _make("admissionregistration.k8s.io", "v1", "admissionregistration",
          "ValidatingWebhookConfiguration", namespaced=False),
    _make("admissionregistration.k8s.io", "v1", "admissionregistration",
          "MutatingWebhookConfiguration", namespaced=False),
    _make("admissionregistration.k8s.io", "v1", "admissionregistration",
          "ValidatingAdmissionPolicy", namespaced=False, plural="validatingadmissionpolicies",
          subs={"status": ""}),
    _make("admissionregistration.k8s.io", "v1", "admissionregistration",
          "ValidatingAdmissionPolicyBinding", namespaced=False),
    # Reviews are create-only questions about the caller, answered and never stored.
    _make("authorization.k8s.io", "v1", "authorization", "SelfSubjectAccessReview",
          namespaced=False, verbs=("create",)),
    _make("authentication.k8s.io", "v1", "authentication", "SelfSubjectReview",
          namespaced=False, verbs=("create",)),
    ResourceType(
        group="apiextensions.k8s.io", version="v1", kind="CustomResourceDefinition",
        plural="customresourcedefinitions", namespaced=False, short_names=("crd", "crds"),
        categories=("api-extensions",), subresources={"status": ""},
        schema_ref="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
                   "CustomResourceDefinition"),
)


class Registry:
    """Lookup of resource types by group/version/plural, by kind, by short name.

    The built-in kinds are fixed; custom resources are learnt and forgotten at run time
    (`add`, `remove`) as their CustomResourceDefinitions come and go. Each API server
    has its own registry (`copy`), so the custom kinds of one never show in another's.
    """

    def __init__(self, kinds: tuple[ResourceType, ...] = _KINDS) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_gvk: dict[tuple[str, str, str], ResourceType] = {}
        self.kinds: tuple[ResourceType, ...] = ()
        # bumped on every add/remove: OpenAPI rebuilds the documents it cached
        self.generation = 0
        for rt in kinds:
            self.add(rt)

    def copy(self) -> Registry:
        return Registry(self.kinds)

    def add(self, rt: ResourceType) -> None:
        """Serve `rt` (replacing a type of the same group, version and plural)."""
        old = self._by_path.get((rt.group, rt.version, rt.plural))
        if old is not None:
            self.remove(old)
        self._by_path[(rt.group, rt.version, rt.plural)] = rt
        self._by_gvk[(rt.group, rt.version, rt.kind)] = rt
        self.kinds = (*self.kinds, rt)
        self.generation += 1

    def remove(self, rt: ResourceType) -> None:
        if self._by_path.get((rt.group, rt.version, rt.plural)) is rt:
            del self._by_path[(rt.group, rt.version, rt.plural)]
        if self._by_gvk.get((rt.group, rt.version, rt.kind)) is rt:
            del self._by_gvk[(rt.group, rt.version, rt.kind)]
        self.kinds = tuple(k for k in self.kinds if k is not rt)
        self.generation += 1

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self.kinds)

    def by_resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_gvk.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def group_versions(self) -> dict[str, list[str]]:
        """group -> its versions, in registry order ("" is the core group)."""
        out: dict[str, list[str]] = {}
        for rt in self.kinds:
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.kinds if rt.group == group and rt.version == version]


REGISTRY = Registry()
