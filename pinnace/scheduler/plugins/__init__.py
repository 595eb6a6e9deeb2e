"""The plugin registry: names to factories, and the default profile.

Filters run in Kubernetes' default order (cheap and decisive first); a node's
first failing filter gives its reason. Score weights are Kubernetes' defaults
(PodTopologySpread's 2 stands for `Spread`).
"""

from __future__ import annotations

from collections.abc import Callable

from pinnace.scheduler.framework import Handle
from pinnace.scheduler.plugins.least_allocated import LeastAllocated
from pinnace.scheduler.plugins.node_affinity import NodeAffinity
from pinnace.scheduler.plugins.node_name import NodeName
from pinnace.scheduler.plugins.node_ports import NodePorts
from pinnace.scheduler.plugins.node_resources_fit import NodeResourcesFit
from pinnace.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pinnace.scheduler.plugins.spread import Spread
from pinnace.scheduler.plugins.taint_toleration import TaintToleration
from pinnace.scheduler.plugins.volume_binding import VolumeBinding

REGISTRY: dict[str, Callable[[], object]] = {
    "NodeUnschedulable": NodeUnschedulable,
    "NodeName": NodeName,
    "TaintToleration": TaintToleration,
    "NodeAffinity": NodeAffinity,
    "NodePorts": NodePorts,
    "NodeResourcesFit": NodeResourcesFit,
    "NodeResourcesLeastAllocated": LeastAllocated,
    "SelectorSpread": Spread,
    "VolumeBinding": VolumeBinding,
}

DEFAULT_FILTERS = ("NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                   "NodePorts", "NodeResourcesFit", "VolumeBinding")
DEFAULT_SCORES = {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesLeastAllocated": 1,
                  "SelectorSpread": 2}



def build(name: str, handle: Handle) -> object:
    """The plugin called `name`, given the handle if it asks for one."""
    factory = REGISTRY[name]
    return factory(handle) if getattr(factory, "uses_handle", False) else factory()  # type: ignore[call-arg]


__all__ = ["DEFAULT_FILTERS", "DEFAULT_SCORES", "REGISTRY", "LeastAllocated", "NodeAffinity",
           "NodeName", "NodePorts", "NodeResourcesFit", "NodeUnschedulable", "Spread",
           "TaintToleration", "VolumeBinding", "build"]
