"""NodeAffinity: `spec.nodeSelector` and the required node affinity terms must match
the node; matching preferred terms add their weights to the node's score.

The matching itself (terms ORed, expressions ANDed, an empty term matches nothing,
`matchFields` on `metadata.name` only) is `pinnace.api.scheduling`'s, shared with the
DaemonSet controller.
"""

from __future__ import annotations

from pinnace.api.scheduling import node_selector_term_matches, required_node_affinity_matches
from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status, normalize_to_max

REASON = "node(s) didn't match Pod's node affinity/selector"


def required_matches(pod: PodInfo, node_info: NodeInfo) -> bool:
    return required_node_affinity_matches(
        node_selector=pod.node_selector, required_terms=pod.required_terms,
        labels=node_info.labels, node_name=node_info.name)


class NodeAffinity:
    name = "NodeAffinity"

    def applies(self, pod: PodInfo) -> bool:
        return bool(pod.node_selector) or pod.required_terms is not None \
            or bool(pod.preferred_terms)

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        return SUCCESS if required_matches(pod, node_info) else Status.unresolvable(REASON)

    def pre_score(self, pod: PodInfo, feasible: list[NodeInfo]) -> bool:
        """Only preferred terms score; a nodeSelector or required terms only filter."""
        return bool(pod.preferred_terms)

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """Sum of the weights of matching preferred terms; `normalize` scales to 100."""
        return sum(int(p.get("weight") or 0) for p in pod.preferred_terms
                   if node_selector_term_matches(p.get("preference") or {},
                                                 node_info.labels, node_info.name))

    def normalize(self, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize_to_max(scores)
