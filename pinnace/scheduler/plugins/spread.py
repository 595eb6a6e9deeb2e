"""Spread (like SelectorSpread): pods of one owner (the controller ownerReference)
prefer the nodes holding the fewest of their siblings."""

from __future__ import annotations

from pinnace.scheduler.framework import NodeInfo, PodInfo


class Spread:
    name = "SelectorSpread"

    def applies(self, pod: PodInfo) -> bool:
        return bool(pod.owner)

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """The sibling count; `normalize` turns it into 100 for the emptiest node."""
        return node_info.owner_counts.get(pod.owner, 0)

    def score_nodes(self, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        owner = pod.owner
        return [ni.owner_counts.get(owner, 0) for ni in nodes]

    def normalize(self, pod: PodInfo, scores: dict[str, int]) -> None:
        top = max(scores.values(), default=0)
        for name, count in scores.items():
            scores[name] = 100 * (top - count) // top if top else 100
