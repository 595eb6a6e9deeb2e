"""The pure parts of the LoadBalancer and EndpointSlice mirroring controllers: the
address pool, which Services are ours, and the slices an Endpoints object mirrors to."""

from __future__ import annotations

from typing import Any

from pinnace.controllers.endpointslice_mirroring import desired_slices, plan, should_mirror
from pinnace.controllers.service_lb import AddressPool, is_ours


def test_pool_hands_out_the_lowest_free_address() -> None:
    pool = AddressPool("127.240.0.0/30")  # .1 and .2
    assert pool.free() == "127.240.0.1"
    pool.take("default/a", "127.240.0.1")
    assert pool.free() == "127.240.0.2"
    pool.take("default/b", "127.240.0.2")
    assert pool.free() is None
    assert pool.release("default/a") == "127.240.0.1"
    assert pool.free() == "127.240.0.1"
    pool.take("default/b", "127.240.0.1")  # moving releases the old one
    assert pool.held == {"default/b": "127.240.0.1"} and pool.free() == "127.240.0.2"
    assert pool.contains("127.240.0.3") and not pool.contains("127.241.0.1")
    assert not pool.contains("not an address")
    assert AddressPool("127.240.9.9/32").free() == "127.240.9.9"
    assert AddressPool("10.0.0.0/31").free() == "10.0.0.0"
    six = AddressPool("fd00::/127")
    assert six.free() == "fd00::1"
    six.take("default/a", "fd00::1")
    assert six.free() is None


def test_which_services_are_ours() -> None:
    def svc(**spec: Any) -> dict[str, Any]:
        return {"spec": {"type": "LoadBalancer", **spec}}
    assert is_ours(svc())
    assert is_ours(svc(loadBalancerClass="pinnace.io/service-lb"))
    assert not is_ours(svc(loadBalancerClass="example.com/other"))
    assert not is_ours(svc(type="NodePort"))


def endpoints(subsets: list[dict[str, Any]], **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "db", "namespace": "default", "uid": "u1",
                         "labels": labels,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                         "{}", "team": "data"}},
            "subsets": subsets}


def test_desired_slices_split_by_family_ports_and_size() -> None:
    ep = endpoints([
        {"addresses": [{"ip": f"10.0.{i // 200}.{i % 200 + 1}"} for i in range(150)],
         "notReadyAddresses": [{"ip": "fd00::1"}, {"ip": "bogus"}],
         "ports": [{"name": "pg", "port": 5432}]}])
    slices = desired_slices(ep)
    assert [(family, len(eps)) for (family, _), eps in slices] == [
        ("IPv4", 100), ("IPv4", 50), ("IPv6", 1)]
    assert slices[2][1][0] == {"addresses": ["fd00::1"], "conditions": {"ready": False}}


def test_plan_updates_in_place_and_copies_metadata() -> None:
    ep = endpoints([{"addresses": [{"ip": "10.0.0.1", "nodeName": "n1"}],
                     "ports": [{"name": "pg", "port": 5432}]}], team="data")
    [create], update, delete = plan(ep, [])
    assert update == [] and delete == []
    assert create["metadata"]["generateName"] == "db-"
    assert create["metadata"]["labels"] == {
        "team": "data", "kubernetes.io/service-name": "db",
        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    assert create["metadata"]["annotations"] == {"team": "data"}
    assert create["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert create["endpoints"] == [{"addresses": ["10.0.0.1"], "conditions": {"ready": True},
                                    "nodeName": "n1"}]
    existing = {**create, "metadata": {**create["metadata"], "name": "db-abc"}}
    assert plan(ep, [existing]) == ([], [], [])  # up to date: nothing written
    ep["subsets"][0]["addresses"].append({"ip": "10.0.0.2"})
    create2, [updated], delete2 = plan(ep, [existing])
    assert create2 == [] and delete2 == [] and updated["metadata"]["name"] == "db-abc"
    ep["subsets"] = []
    assert plan(ep, [existing]) == ([], [], [existing])


def test_should_mirror() -> None:
    service = {"spec": {"ports": [{"port": 80}]}}
    assert should_mirror(endpoints([]), service)
    assert not should_mirror(endpoints([]), None)
    assert not should_mirror(None, service)
    assert not should_mirror(endpoints([]), {"spec": {"selector": {"app": "x"}}})
    assert not should_mirror(endpoints([], **{"endpointslice.kubernetes.io/skip-mirror":
                                              "true"}), service)

