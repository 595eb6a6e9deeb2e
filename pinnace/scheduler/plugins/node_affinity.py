"""NodeAffinity: `spec.nodeSelector` and the required node affinity terms must match
the node; matching preferred terms add their weights to the node's score.

Terms are ORed, a term's expressions ANDed; a term with no expression matches
nothing. `matchFields` knows `metadata.name` only, as in Kubernetes.
"""

from __future__ import annotations

from typing import Any

from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status, normalize_to_max

REASON = "node(s) didn't match Pod's node affinity/selector"

Obj = dict[str, Any]


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def requirement_matches(expr: Obj, fields: dict[str, str]) -> bool:
    key, op = expr.get("key", ""), expr.get("operator")
    values = expr.get("values") or []
    present = key in fields
    value = fields.get(key, "")
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        have, want = _int(value), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, labels: dict[str, str], node_name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False
    fields = {"metadata.name": node_name}
    return all(requirement_matches(e, labels) for e in exprs) and \
        all(e.get("key") == "metadata.name" and requirement_matches(e, fields)
            for e in field_exprs)


def required_matches(pod: PodInfo, node_info: NodeInfo) -> bool:
    labels = node_info.labels
    for k, v in pod.node_selector.items():
        if labels.get(k) != v:
            return False
    if pod.required_terms is None:
        return True
    return any(term_matches(t, labels, node_info.name) for t in pod.required_terms)


class NodeAffinity:
    name = "NodeAffinity"

    def applies(self, pod: PodInfo) -> bool:
        return bool(pod.node_selector) or pod.required_terms is not None \
            or bool(pod.preferred_terms)

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        return SUCCESS if required_matches(pod, node_info) else Status.unresolvable(REASON)

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """Sum of the weights of matching preferred terms; `normalize` scales to 100."""
        return sum(int(p.get("weight") or 0) for p in pod.preferred_terms
                   if term_matches(p.get("preference") or {}, node_info.labels,
                                   node_info.name))

    def normalize(self, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize_to_max(scores)
