"""Discovery documents: /version, legacy /api and /apis, and aggregated discovery v2.

Everything is derived from the server's kinds registry (`pinnace.api.kinds`), so a
kind added there — built in, or learnt from a CustomResourceDefinition — is
discoverable without touching this module. The functions are pure and return plain
dicts; the HTTP layer serialises them (and picks the aggregated or legacy form from
the request's Accept header: clients recognise aggregated discovery by the response
Content-Type `AGGREGATED_CONTENT_TYPE` alone).

Shapes follow kube-apiserver 1.32: subresources appear in the legacy APIResourceList
as `<plural>/<sub>` entries with an empty singularName, and carry group/version only
when they speak a kind of another group (`deployments/scale` -> autoscaling/v1 Scale).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import platform
import sys
from dataclasses import dataclass
from typing import Any

from pinnace.api.kinds import REGISTRY, Registry, ResourceType

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

KUBERNETES_MAJOR = "1"
KUBERNETES_MINOR = "32"
# Build metadata ("+pinnace") keeps semver precedence equal to v1.32.0, unlike a
# pre-release suffix ("-pinnace"), which would sort before it.
GIT_VERSION = f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+pinnace"

# Verbs Kubernetes serves on each subresource.
_SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "ephemeralcontainers": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "token": ("create",),
    "finalize": ("update",),
}


@dataclass(frozen=True)
class Subresource:
    """One subresource of a resource type, with the kind it speaks."""

    name: str
    group: str
    version: str
    kind: str
    verbs: tuple[str, ...]
    foreign: bool  # speaks a kind of another group/version than its parent


def subresources(rt: ResourceType) -> list[Subresource]:
    """The subresources of `rt`, sorted by name, with their kinds and verbs."""
    out = []
    for name, spec in sorted(rt.subresources.items()):
        group, version, kind = rt.group, rt.version, rt.kind
        if spec:
            gv, sep, kind = spec.rpartition(":")
            if sep:
                group, _, version = gv.rpartition("/")
        foreign = (group, version) != (rt.group, rt.version)
        verbs = _SUBRESOURCE_VERBS.get(name, ("get",))
        out.append(Subresource(name, group, version, kind, verbs, foreign))
    return out


def version_info() -> dict[str, str]:
    """The `/version` body (k8s.io/apimachinery/pkg/version.Info)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": f"{sys.platform}/{arch}",
    }


def api_versions(server_address: str = "127.0.0.1:6443", kinds: Registry = REGISTRY
                 ) -> dict[str, Any]:
    """The legacy `/api` body: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": list(kinds.group_versions().get("", [])),
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address},
        ],
    }


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(kinds: Registry = REGISTRY) -> dict[str, Any]:
    """The legacy `/apis` body: every named group."""
    groups = [_group_entry(g, vs) for g, vs in kinds.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str, kinds: Registry = REGISTRY) -> dict[str, Any] | None:
    """The `/apis/<group>` body, or None for a group pinnace does not serve."""
    versions = kinds.group_versions().get(group) if group else None
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


@functools.cache
def storage_version_hash(group: str, version: str, kind: str) -> str:
    """An opaque, stable hash of the storage version, shaped like Kubernetes' (8 bytes b64)."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _resource_entry(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entry["storageVersionHash"] = storage_version_hash(rt.group, rt.version, rt.kind)
    return entry


def _subresource_entry(rt: ResourceType, sub: Subresource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{rt.plural}/{sub.name}",
        "singularName": "",
        "namespaced": rt.namespaced,
    }
    if sub.foreign:
        entry["group"] = sub.group
        entry["version"] = sub.version
    entry["kind"] = sub.kind
    entry["verbs"] = list(sub.verbs)
    return entry


def api_resource_list(group: str, version: str, kinds: Registry = REGISTRY
                      ) -> dict[str, Any] | None:
    """The `/api/v1` or `/apis/<g>/<v>` body, or None for an unserved group-version."""
    served = kinds.in_group_version(group, version)
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for rt in sorted(served, key=lambda r: r.plural):
        resources.append(_resource_entry(rt))
        resources.extend(_subresource_entry(rt, sub) for sub in subresources(rt))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = [
        {
            "subresource": sub.name,
            "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
            "verbs": list(sub.verbs),
        }
        for sub in subresources(rt)
    ]
    if subs:
        entry["subresources"] = subs
    return entry


def _aggregated_group(group: str, versions: list[str], kinds: Registry) -> dict[str, Any]:
    metadata: dict[str, Any] = {"creationTimestamp": None}
    if group:
        metadata["name"] = group
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": v,
                "resources": [
                    _aggregated_resource(rt)
                    for rt in sorted(kinds.in_group_version(group, v), key=lambda r: r.plural)
                ],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def aggregated_discovery(legacy: bool, kinds: Registry = REGISTRY) -> dict[str, Any]:
    """The aggregated `apidiscovery.k8s.io/v2 APIGroupDiscoveryList` for `/api` (legacy=True,
    the core group, which has no name) or `/apis` (every named group)."""
    items = [
        _aggregated_group(g, vs, kinds)
        for g, vs in kinds.group_versions().items()
        if (g == "") == legacy
    ]
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
