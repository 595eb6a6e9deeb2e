"""TaintToleration: NoSchedule and NoExecute taints keep out pods that don't tolerate
them; in scoring, fewer untolerated PreferNoSchedule taints is better."""

from __future__ import annotations

from pinnace.api.scheduling import find_untolerated_taint, tolerations_tolerate_taint
from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status, normalize_to_max

FILTER_EFFECTS = ("NoSchedule", "NoExecute")


class TaintToleration:
    name = "TaintToleration"
    passes_plain_nodes = True  # it rejects only for a taint or spec.unschedulable

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if not node_info.taints:
            return SUCCESS
        taint = find_untolerated_taint(node_info.taints, pod.tolerations, FILTER_EFFECTS)
        if taint is None:
            return SUCCESS
        return Status.unresolvable(
            f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}")

    def pre_score(self, pod: PodInfo, feasible: list[NodeInfo]) -> bool:
        """Without taints every node scores 0 (100 once reversed): nothing to rank."""
        return any(ni.taints for ni in feasible)

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """The count of untolerated PreferNoSchedule taints; `normalize` reverses it."""
        if not node_info.taints:
            return 0
        prefer = [t for t in pod.tolerations if (t.get("effect") or "PreferNoSchedule")
                  == "PreferNoSchedule"]
        return sum(1 for t in node_info.taints if t.get("effect") == "PreferNoSchedule"
                   and not tolerations_tolerate_taint(prefer, t))

    def normalize(self, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize_to_max(scores, reverse=True)
