"""Services: ClusterIP and NodePort allocation as admission, and the fields that
depend on the type (Kubernetes' `pkg/registry/core/service/storage` allocators; the
rules — taken and out-of-range ports, headless, type changes, LoadBalancers without
node ports, health check ports — are in `allocators`).

The allocator keeps the addresses and ports in use in memory, rebuilt from the stored
Services at start (`restore`). A write allocates before it lands and undoes the
allocation when it does not; an update releases what the old object held only once
the new one is stored; a delete releases once the object is gone.
"""

from __future__ import annotations

from collections.abc import Callable

from pinnace.api.types import Obj
from pinnace.apiserver import allocators
from pinnace.apiserver.strategy import DefaultStrategy


class ServiceStrategy(DefaultStrategy):
    returns_deleted_object = True
    allocates = True

    def prepare_for_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        new = super().prepare_for_update(new, old, subresource)
        if not subresource:
            # changing the type drops what the old type needed (nodePorts, clusterIP)
            allocators.drop_type_dependent_fields(new, old)
        return new

    def allocate(self, new: Obj, old: Obj | None) -> Callable[[], None]:
        return self.ctx.services.allocate(new, old)

    def updated(self, new: Obj, old: Obj) -> None:
        self.ctx.services.release_old(new, old)

    def deleted(self, obj: Obj) -> None:
        self.ctx.services.release(obj)

    def restore(self, objects: list[Obj]) -> None:
        self.ctx.services.load(objects)
