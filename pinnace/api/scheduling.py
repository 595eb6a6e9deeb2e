"""Where a pod may run: node selectors, required node affinity, taints and tolerations.

Pure functions over API objects (plain dicts), shared by the scheduler's filter
and score plugins and by the controllers that place or evict pods themselves
(DaemonSet, node lifecycle's taint eviction), so all of them agree on one
answer. Kubernetes keeps the same logic in one place for the same reason
(`component-helpers/scheduling/corev1`, `Toleration.ToleratesTaint`).

Node selector terms: terms are ORed, a term's requirements ANDed, and a term
with no requirement matches nothing. `matchExpressions` read the node's labels;
`matchFields` know `metadata.name` only — a requirement on any other field
never matches. `Gt`/`Lt` compare integers; a value that is not one never matches.

Tolerations: a toleration with an effect covers only taints with that effect;
`Exists` with no key covers every taint; any other operator is `Equal`, which
needs the key and compares values (a missing value is the empty string).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pinnace.api.types import Obj

NODE_NAME_FIELD = "metadata.name"


# -- node selectors and node affinity ----------------------------------------------------

def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def node_selector_requirement_matches(requirement: Obj, values: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement (`key`, `operator`, `values`) against label/field values."""
    key, op = requirement.get("key", ""), requirement.get("operator")
    wanted = requirement.get("values") or []
    present = key in values
    value = values.get(key, "")
    if op == "In":
        return present and value in wanted
    if op == "NotIn":
        return not present or value not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        have, want = _int(value), _int(wanted[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    """A NodeSelectorTerm against a node's labels and name; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False
    fields = {NODE_NAME_FIELD: node_name}
    return all(node_selector_requirement_matches(e, labels) for e in exprs) and \
        all(e.get("key") == NODE_NAME_FIELD and node_selector_requirement_matches(e, fields)
            for e in field_exprs)


def match_node_selector_terms(terms: Iterable[Obj], node: Obj) -> bool:
    """Whether any of the NodeSelectorTerms matches node (no term: no match)."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name") or ""
    return any(node_selector_term_matches(t, labels, name) for t in terms)


def node_selector_matches(node_selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A pod's `spec.nodeSelector`: every key present on the node with that exact value."""
    return all(labels.get(k) == v for k, v in node_selector.items())


def required_node_selector_terms(pod_spec: Obj) -> list[Obj] | None:
    """The terms of `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`,
    or None when the pod has no required node affinity (which then constrains nothing)."""
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def required_node_affinity_matches(*, node_selector: Mapping[str, str],
                                   required_terms: list[Obj] | None,
                                   labels: Mapping[str, str], node_name: str) -> bool:
    """nodeSelector and the required node affinity terms both admit the node
    (Kubernetes' `GetRequiredNodeAffinity(pod).Match(node)`)."""
    if not node_selector_matches(node_selector, labels):
        return False
    if required_terms is None:
        return True
    return any(node_selector_term_matches(t, labels, node_name) for t in required_terms)


def pod_spec_fits_node(pod_spec: Obj, node: Obj) -> bool:
    """`required_node_affinity_matches` for a pod spec and a Node object."""
    meta = node.get("metadata") or {}
    return required_node_affinity_matches(
        node_selector=pod_spec.get("nodeSelector") or {},
        required_terms=required_node_selector_terms(pod_spec),
        labels=meta.get("labels") or {}, node_name=meta.get("name") or "")


# -- taints and tolerations --------------------------------------------------------------

def toleration_tolerates_taint(toleration: Obj, taint: Obj) -> bool:
    """Kubernetes' Toleration.ToleratesTaint, for the operators validation admits."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True  # an empty key with Exists tolerates every taint
    return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerations_tolerate_taint(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Whether any of the tolerations covers taint."""
    return any(toleration_tolerates_taint(t, taint) for t in tolerations)


def find_untolerated_taint(taints: Iterable[Obj], tolerations: list[Obj],
                           effects: Collection[str]) -> Obj | None:
    """The first taint with one of `effects` that no toleration covers, or None."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerations_tolerate_taint(tolerations, taint):
            return taint
    return None


def tolerates_all(tolerations: list[Obj], taints: Iterable[Obj],
                  effects: Collection[str]) -> bool:
    """Whether the tolerations cover every taint having one of `effects` (others ignored)."""
    return find_untolerated_taint(taints, tolerations, effects) is None
