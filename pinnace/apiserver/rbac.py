"""Authorization: Kubernetes' RBAC semantics, read from the watch caches.

    request ─► request_attributes(user, method, path, query)   (verb, group, resource, …)
            ─► RBACAuthorizer.authorize(attrs)
                 system:masters → allowed (hard-coded, as Kubernetes does)
                 ClusterRoleBindings, then RoleBindings of the request's namespace:
                   a binding whose subjects name the user (or one of its groups)
                   lends the rules of its role; the first rule that covers the
                   request allows it.  Nothing matching → denied (RBAC never denies
                   explicitly, it just has no opinion).

Roles and bindings come from the registry's in-memory watch caches, so a check is
a scan of a few dicts and a change to a binding applies to the very next request.
A ClusterRole with an `aggregationRule` also lends the rules of the ClusterRoles
its selectors pick (what Kubernetes' aggregation controller copies into it).
Bindings that name a missing role are skipped; their errors become the reason
("RBAC: clusterrole.rbac.authorization.k8s.io "x" not found"), as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pinnace.api import errors, selectors
from pinnace.apiserver.auth import User
from pinnace.apiserver.registry import ObjectRegistry

RBAC_GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
# Kubernetes' namespace subresources: /namespaces/<ns>/status is the namespace's own
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Attributes:
    """What is asked: Kubernetes' `authorizer.Attributes`."""

    user: User
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def request_attributes(user: User, method: str, path: str,
                       query: Mapping[str, str]) -> Attributes:
    """The attributes of an HTTP request (Kubernetes' RequestInfoFactory)."""
    verb = _METHOD_VERBS.get(method.upper(), method.lower())
    parts = [p for p in path.strip("/").split("/")]
    if parts and parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:  # /version, /healthz, /api, /apis/<g>/<v> discovery, /openapi/…
        return Attributes(user, verb, False, path=path)
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
        # a list or watch of one object by name is checked against resourceNames
        name = _exact_name(query.get("fieldSelector", ""))
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, True, path=path, api_group=group, api_version=version,
                      resource=resource, subresource=sub, namespace=namespace, name=name)


def _exact_name(field_selector: str) -> str:
    for term in field_selector.split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


class RBACAuthorizer:
    def __init__(self, registry: ObjectRegistry) -> None:
        # imported here: the Node authorizer reads rule_allows from this module
        from pinnace.apiserver.node_authorizer import NodeAuthorizer
        kinds = registry.kinds
        self.caches = {kind: registry.cache(rt) for kind in (
            "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
            if (rt := kinds.by_kind(RBAC_GROUP, "v1", kind)) is not None}
        # --authorization-mode=Node,RBAC: nodes' requests meet the Node authorizer first
        self.node = NodeAuthorizer(registry)
        # (user, namespace) -> the bindings' rules, valid while no RBAC object changes
        # (the caches' revisions say when): the components in this process ask on
        # every request, always with the same few users
        self._rules: dict[tuple[User, str], tuple[list[tuple[str, list[dict[str, Any]]]],
                                                  list[str]]] = {}
        self._rules_at: tuple[int, ...] = ()

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason names the granting binding or the errors met."""
        if MASTERS in attrs.user.groups:
            return True, ""
        decision = self.node.authorize(attrs)
        if decision is not None:
            return decision
        granted, problems = self._cached_rules(attrs.user, attrs.namespace)
        for source, rules in granted:
            if any(rule_allows(attrs, r) for r in rules):
                return True, f"RBAC: allowed by {source}"
        return False, ("RBAC: " + ", ".join(problems)) if problems else ""

    def _cached_rules(self, user: User, namespace: str
                      ) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[str]]:
        revisions = tuple(c.revision for c in self.caches.values())
        if revisions != self._rules_at or len(self._rules) > 4096:
            self._rules.clear()
            self._rules_at = revisions
        found = self._rules.get((user, namespace))
        if found is None:
            problems: list[str] = []
            found = self._rules[(user, namespace)] = (
                list(self.rules_for(user, namespace, problems)), problems)
        return found

    def rules_for(self, user: User, namespace: str, problems: list[str]
               ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(description of the binding, rules it grants) for every binding naming `user`."""
        for crb in self.caches["ClusterRoleBinding"].list(None):
            ref = crb.get("roleRef") or {}
            who = _applies(crb, user, "")
            if ref.get("kind") != "ClusterRole" or not who:
                continue
            rules = self.cluster_role_rules(ref.get("name", ""), problems)
            if rules is not None:
                yield (f'ClusterRoleBinding "{crb["metadata"]["name"]}" of ClusterRole '
                       f'"{ref.get("name")}" to {who}'), rules
        if not namespace:
            return
        for rb in self.caches["RoleBinding"].list(namespace):
            ref = rb.get("roleRef") or {}
            who = _applies(rb, user, namespace)
            if not who:
                continue
            role_name = ref.get("name", "")
            if ref.get("kind") == "Role":
                role = self.caches["Role"].get(namespace, role_name)
                if role is None:
                    problems.append(f'role.{RBAC_GROUP} "{role_name}" not found')
                    continue
                rules = list(role.get("rules") or [])
            elif ref.get("kind") == "ClusterRole":
                found = self.cluster_role_rules(role_name, problems)
                if found is None:
                    continue
                rules = found
            else:
                continue
            yield (f'RoleBinding "{rb["metadata"]["name"]}/{namespace}" of '
                   f'{ref.get("kind")} "{role_name}" to {who}'), rules

    def cluster_role_rules(self, name: str, problems: list[str]
                            ) -> list[dict[str, Any]] | None:
        roles = self.caches["ClusterRole"]
        role = roles.get(None, name)
        if role is None:
            problems.append(f'clusterrole.{RBAC_GROUP} "{name}" not found')
            return None
        rules = list(role.get("rules") or [])
        aggregation = role.get("aggregationRule") or {}
        for sel in aggregation.get("clusterRoleSelectors") or []:
            try:
                chosen = selectors.LabelSelector.from_dict(sel)
            except errors.ApiError:
                continue
            for other in roles.list(None):
                if other is not role and chosen.matches(other["metadata"].get("labels")):
                    rules.extend(other.get("rules") or [])
        return rules


def _applies(binding: dict[str, Any], user: User, namespace: str) -> str:
    """The subject of `binding` that names `user` ("" if none), as Kubernetes prints it."""
    for s in binding.get("subjects") or []:
        kind, name = s.get("kind"), s.get("name")
        if kind == "User" and name == user.name:
            return f'User "{name}"'
        if kind == "Group" and name in user.groups:
            return f'Group "{name}"'
        if kind == "ServiceAccount":
            ns = s.get("namespace") or namespace
            if ns and user.name == f"system:serviceaccount:{ns}:{name}":
                return f'ServiceAccount "{name}/{ns}"'
    return ""


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    """Does one PolicyRule cover the request (Kubernetes' `RuleAllows`)?"""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(u == "*" or u == attrs.path or
                   (u.endswith("*") and attrs.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.api_group not in groups:
        return False
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not any(r == "*" or r == wanted or
               (attrs.subresource and r == f"*/{attrs.subresource}")
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def forbidden(attrs: Attributes, reason: str = "") -> errors.ApiError:
    """The 403 Status Kubernetes answers for a denied request."""
    who = attrs.user.name
    if not attrs.resource_request:
        msg = f'User "{who}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource \
            else attrs.resource
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace \
            else "at the cluster scope"
        msg = (f'User "{who}" cannot {attrs.verb} resource "{resource}" in API group '
               f'"{attrs.api_group}" {where}')
    if reason:
        msg += ": " + reason
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        qualified += f' "{attrs.name}"'
    prefix = f"{qualified} is forbidden" if qualified else "forbidden"
    return errors.ApiError(403, "Forbidden", f"{prefix}: {msg}",
                           name=attrs.name, group=attrs.api_group, kind=attrs.resource)
