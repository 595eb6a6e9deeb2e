"""RBAC escalation prevention: nobody grants permissions they do not hold.

Kubernetes' rules (`pkg/registry/rbac/escalation_check.go`), applied to every write of a
Role, ClusterRole, RoleBinding or ClusterRoleBinding by a user from outside the
process (in-process components and `system:masters` are trusted):

- a Role/ClusterRole may only hold rules the writer's own rules cover (in that
  namespace; cluster-wide for a ClusterRole), unless the writer may `escalate` it;
- a binding may only point at a role whose rules the writer's own rules cover,
  unless the writer may `bind` that role.

Coverage is decided on atomic rules (one group, resource, verb and name each), with
`*` wildcards, `<resource>/*` subresource wildcards and `nonResourceURLs` prefixes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pinnace.api import errors
from pinnace.api.kinds import ResourceType
from pinnace.apiserver.auth import User
from pinnace.apiserver.rbac import MASTERS, RBAC_GROUP, Attributes, RBACAuthorizer

Rule = Mapping[str, Any]


def _atoms(rule: Rule) -> Iterator[tuple[str, str, str, str, str]]:
    """(group, resource, verb, name, url) for every atomic permission of a rule."""
    verbs = rule.get("verbs") or []
    for url in rule.get("nonResourceURLs") or []:
        for verb in verbs:
            yield "", "", verb, "", url
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in verbs:
                for name in rule.get("resourceNames") or [""]:
                    yield group, resource, verb, name, ""


def _covers(owner: Rule, atom: tuple[str, str, str, str, str]) -> bool:
    group, resource, verb, name, url = atom
    verbs = owner.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    if url:
        return any(u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1]))
                   for u in owner.get("nonResourceURLs") or [])
    groups = owner.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    resources = owner.get("resources") or []
    base, _, sub = resource.partition("/")
    if not ("*" in resources or resource in resources or
            (sub and f"{base}/*" in resources) or (sub and f"*/{sub}" in resources)):
        return False
    names = owner.get("resourceNames") or []
    return not names or (name != "" and name in names)


def uncovered(owner_rules: list[Rule], wanted: list[Rule]) -> list[Rule]:
    """The rules of `wanted` that `owner_rules` do not cover."""
    missing = []
    for rule in wanted:
        if not all(any(_covers(o, atom) for o in owner_rules) for atom in _atoms(rule)):
            missing.append(rule)
    return missing


def _describe(rule: Rule) -> str:
    parts = []
    for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                       ("resourceNames", "ResourceNames"),
                       ("nonResourceURLs", "NonResourceURLs"), ("verbs", "Verbs")):
        values = rule.get(key) or []
        if values:
            parts.append(f"{label}:[" + " ".join(f'"{v}"' for v in values) + "]")
    return "{" + ", ".join(parts) + "}"


class EscalationCheck:
    def __init__(self, authz: RBACAuthorizer) -> None:
        self.authz = authz

    def __call__(self, rt: ResourceType, obj: dict[str, Any], user: User | None) -> None:
        if user is None or MASTERS in user.groups or rt.group != RBAC_GROUP:
            return
        m = obj.get("metadata") or {}
        namespace = m.get("namespace") or ""
        if rt.kind in ("Role", "ClusterRole"):
            wanted = list(obj.get("rules") or [])
            if self._may(user, "escalate", rt.plural, namespace, m.get("name", "")):
                return
        elif rt.kind in ("RoleBinding", "ClusterRoleBinding"):
            ref = obj.get("roleRef") or {}
            role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if self._may(user, "bind", role_plural, namespace, ref.get("name", "")):
                return
            found = self._role_rules(ref, namespace)
            if found is None:  # nothing to compare with: only `bind` may do this
                raise _forbidden(rt, m, user, f'{ref.get("kind", "").lower()}.{RBAC_GROUP} '
                                 f'"{ref.get("name", "")}" not found')
            wanted = found
        else:
            return
        owner = [r for _, rules in self.authz.rules_for(user, namespace, []) for r in rules]
        missing = uncovered(owner, wanted)
        if missing:
            raise _forbidden(rt, m, user, "is attempting to grant RBAC permissions not "
                             "currently held:\n" + "\n".join(_describe(r) for r in missing))

    def _may(self, user: User, verb: str, plural: str, namespace: str, name: str) -> bool:
        attrs = Attributes(user, verb, True, api_group=RBAC_GROUP, api_version="v1",
                           resource=plural, namespace=namespace, name=name)
        return self.authz.authorize(attrs)[0]

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Rule] | None:
        if ref.get("kind") == "ClusterRole":
            return self.authz.cluster_role_rules(ref.get("name", ""), [])
        role = self.authz.caches["Role"].get(namespace, ref.get("name", ""))
        return None if role is None else list(role.get("rules") or [])


def _forbidden(rt: ResourceType, m: Mapping[str, Any], user: User, what: str
               ) -> errors.ApiError:
    groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
    name = m.get("name", "")
    return errors.ApiError(403, "Forbidden", f'{rt.plural}.{RBAC_GROUP} "{name}" is forbidden: '
                           f'user "{user.name}" (groups={groups}) {what}', name=name,
                           group=RBAC_GROUP, kind=rt.plural)
