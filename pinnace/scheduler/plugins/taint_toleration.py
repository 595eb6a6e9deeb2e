"""TaintToleration: NoSchedule and NoExecute taints keep out pods that don't tolerate
them; in scoring, fewer untolerated PreferNoSchedule taints is better."""

from __future__ import annotations

from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status, normalize_to_max
from pinnace.scheduler.plugins.taints import tolerated

FILTER_EFFECTS = ("NoSchedule", "NoExecute")


class TaintToleration:
    name = "TaintToleration"

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if not node_info.taints:
            return SUCCESS
        for taint in node_info.taints:
            if taint.get("effect") in FILTER_EFFECTS and not tolerated(pod.tolerations, taint):
                return Status.unresolvable(
                    f"node(s) had untolerated taint {{{taint.get('key')}: "
                    f"{taint.get('value') or ''}}}")
        return SUCCESS

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """The count of untolerated PreferNoSchedule taints; `normalize` reverses it."""
        if not node_info.taints:
            return 0
        prefer = [t for t in pod.tolerations if (t.get("effect") or "PreferNoSchedule")
                  == "PreferNoSchedule"]
        return sum(1 for t in node_info.taints
                   if t.get("effect") == "PreferNoSchedule" and not tolerated(prefer, t))

    def normalize(self, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize_to_max(scores, reverse=True)
