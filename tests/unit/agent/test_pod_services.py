"""The two PodServices: a simulated node's null object does nothing and costs nothing."""

from __future__ import annotations

import inspect

from pinnace.agent.pod_services import NodeServices, PodServices, SimulatedServices
from pinnace.agent.runtime import ContainerState, ContainerStatus


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {n: inspect.signature(f) for n, f in vars(cls).items()
            if callable(f) and not n.startswith("_")}


def test_both_implement_the_protocol_with_its_signatures() -> None:
    wanted = _methods(PodServices)
    for cls in (SimulatedServices, NodeServices):
        got = _methods(cls)
        assert {n: got.get(n) for n in wanted} == wanted, cls.__name__


async def test_simulated_services_are_a_null_object() -> None:
    s = SimulatedServices()
    pod = {"metadata": {"uid": "u", "name": "p", "namespace": "ns"}}
    c = {"name": "a", "image": "img", "env": [{"name": "A", "value": "1"}, {"name": "B"}]}
    status = ContainerStatus("id", "sb", "a", "img", "", 0, ContainerState.RUNNING, 0.0)

    async def never(*_: str) -> None:
        raise AssertionError("a simulated node records no Events")

    assert await s.ensure_image(pod, c, never) is None
    assert await s.environment(pod, c, allocatable=None) == {"A": "1", "B": ""}
    assert s.mounts(c, await s.setup_volumes(pod)) == []
    assert await s.refresh_volumes(pod) == [] and s.refresh_period is None
    assert s.probe(pod, c, status, "10.0.0.1") is None
    assert s.ready("id") and s.started("id")
