"""The strategy of every resource type, found by (group, kind).

`build` makes one strategy object per resource type when the registry starts, so the
write path finds its strategy with one dict lookup. A kind not in `_BY_KIND` takes
its group's strategy from `_BY_GROUP`, else `DefaultStrategy`; a custom resource's type
takes `CustomResourceStrategy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pinnace.api.kinds import ResourceType
from pinnace.apiserver.strategies.custom import CustomResourceStrategy, DefinitionStrategy
from pinnace.apiserver.strategies.jobs import JobStrategy
from pinnace.apiserver.strategies.namespaces import NamespaceStrategy
from pinnace.apiserver.strategies.pods import PodStrategy
from pinnace.apiserver.strategies.services import ServiceStrategy
from pinnace.apiserver.strategies.storage import ClaimStrategy, VolumeStrategy
from pinnace.apiserver.strategy import (
    DefaultStrategy,
    GenerationStrategy,
    ReportedStatusStrategy,
    ReturnsDeletedStrategy,
    Strategy,
    StrategyContext,
)

Factory = Callable[[ResourceType, StrategyContext], Strategy]

_BY_KIND: dict[tuple[str, str], Factory] = {
    ("", "Pod"): PodStrategy,
    ("", "Service"): ServiceStrategy,
    ("", "Namespace"): NamespaceStrategy,
    ("batch", "Job"): JobStrategy,
    ("", "Node"): ReportedStatusStrategy,
    ("", "Endpoints"): ReportedStatusStrategy,
    ("", "Event"): ReportedStatusStrategy,
    ("events.k8s.io", "Event"): ReportedStatusStrategy,
    ("coordination.k8s.io", "Lease"): ReportedStatusStrategy,
    ("discovery.k8s.io", "EndpointSlice"): ReportedStatusStrategy,
    ("", "PersistentVolume"): VolumeStrategy,
    ("", "PersistentVolumeClaim"): ClaimStrategy,
    ("", "ServiceAccount"): ReturnsDeletedStrategy,
    # revisions are snapshots, not specs a controller converges on
    ("apps", "ControllerRevision"): DefaultStrategy,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): DefinitionStrategy,
}
_BY_GROUP: dict[str, Factory] = {
    "apps": GenerationStrategy,
    "batch": GenerationStrategy,
    "storage.k8s.io": ReturnsDeletedStrategy,
}


def strategy_for(rt: ResourceType, ctx: StrategyContext) -> Strategy:
    if rt.custom is not None:  # served from a CustomResourceDefinition
        return CustomResourceStrategy(rt, ctx)
    factory = _BY_KIND.get((rt.group, rt.kind)) or _BY_GROUP.get(rt.group) or DefaultStrategy
    return factory(rt, ctx)


def build(kinds: Iterable[ResourceType], ctx: StrategyContext) -> dict[ResourceType, Strategy]:
    return {rt: strategy_for(rt, ctx) for rt in kinds}


__all__ = ["Strategy", "StrategyContext", "build", "strategy_for"]
