"""The pure parts of the EndpointSlice and Endpoints controllers: desired endpoints,
the slice plan (create / update in place / delete) and the Endpoints subsets."""

from __future__ import annotations

import copy
from typing import Any

from pinnace.api.types import Obj
from pinnace.controllers.endpoints import desired_subsets, endpoints_object, truncate
from pinnace.controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    SlicePlan,
    desired_endpoints,
    find_port,
    plan_slices,
)
from tests.unit.controllers.objects import pod as base_pod


def service(name: str = "web", *, ports: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-svc-{name}",
                         "labels": {"team": "a"}},
            "spec": {"selector": {"app": name}, "clusterIP": "10.96.0.10",
                     "ports": ports if ports is not None else
                     [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                     **spec}}


def pod(name: str, ip: str, *, container_ports: list[Obj] | None = None, **kw: Any) -> Obj:
    p = base_pod(name, labels={"app": "web"}, podIP=ip, **kw)
    p["spec"]["containers"] = [{"name": "app", "image": "nginx",
                                "ports": container_ports or []}]
    return p


def apply(plan: SlicePlan, existing: list[Obj]) -> list[Obj]:
    """The slices after the plan is written (creations get names as the server would)."""
    gone = {s["metadata"]["name"] for s in plan.delete}
    updated = {s["metadata"]["name"]: s for s in plan.update}
    result = [updated.get(s["metadata"]["name"], s) for s in existing
              if s["metadata"]["name"] not in gone]
    for i, s in enumerate(plan.create):
        s = copy.deepcopy(s)
        s["metadata"]["name"] = f"{s['metadata']['generateName']}new{len(existing)}{i}"
        result.append(s)
    return result


def endpoints_of(slices: list[Obj]) -> list[Obj]:
    return [e for s in slices for e in s["endpoints"]]


def test_one_slice_with_ready_endpoints() -> None:
    svc = service()
    plan = plan_slices(svc, [pod(f"p{i}", f"10.1.0.{i}") for i in range(3)], [])
    assert not plan.update and not plan.delete and len(plan.create) == 1
    s = plan.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"team": "a", SERVICE_NAME_LABEL: "web",
                                       MANAGED_BY_LABEL: MANAGED_BY}
    ref = s["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == \
        ("Service", "web", "uid-svc-web", True)
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert [e["addresses"] for e in s["endpoints"]] == [["10.1.0.0"], ["10.1.0.1"], ["10.1.0.2"]]
    e = s["endpoints"][0]
    assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert e["nodeName"] == "n1"
    assert e["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "p0",
                              "uid": "uid-p0"}


def test_conditions_not_ready_terminating_and_publish() -> None:
    pods = [pod("a", "10.1.0.1", ready=False), pod("b", "10.1.0.2", deleting=True),
            pod("c", "10.1.0.3", phase="Succeeded"), pod("d", "")]
    eps = desired_endpoints(service(), pods)[(("http", "TCP", 8080, ""),)]
    assert [e["targetRef"]["name"] for e in eps] == ["a", "b"]  # terminal and IP-less left out
    assert eps[0]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert eps[1]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    published = desired_endpoints(service(publishNotReadyAddresses=True), pods)
    assert all(e["conditions"]["ready"] for e in published[(("http", "TCP", 8080, ""),)])


def test_hostname_only_in_the_services_subdomain() -> None:
    a, b = pod("a", "10.1.0.1"), pod("b", "10.1.0.2")
    a["spec"].update(hostname="a-host", subdomain="web")
    b["spec"].update(hostname="b-host", subdomain="other")
    eps = endpoints_of(plan_slices(service(), [a, b], []).create)
    assert [e.get("hostname") for e in eps] == ["a-host", None]


def test_named_target_port_resolved_per_pod() -> None:
    svc = service(ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}])
    pods = [pod("a", "10.1.0.1", container_ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", "10.1.0.2", container_ports=[{"name": "web", "containerPort": 9090}]),
            pod("c", "10.1.0.3", container_ports=[{"name": "web", "containerPort": 8080}])]
    plan = plan_slices(svc, pods, [])
    by_port = {s["ports"][0]["port"]: [e["targetRef"]["name"] for e in s["endpoints"]]
               for s in plan.create}
    assert by_port == {8080: ["a", "c"], 9090: ["b"]}
    udp = {"name": "dns", "protocol": "UDP", "targetPort": "web"}
    assert find_port(pods[0], udp) is None  # the protocol must match too


def test_more_than_100_endpoints_split_and_update_in_place() -> None:
    svc = service()
    pods = [pod(f"p{i:03}", f"10.1.{i // 250}.{i % 250}") for i in range(150)]
    slices = apply(plan_slices(svc, pods, []), [])
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100]
    # settled: nothing to write
    assert plan_slices(svc, pods, slices).empty()
    # one pod goes, one comes: the slices change in place, none is created or deleted
    pods2 = [*pods[1:], pod("p999", "10.9.9.9")]
    plan = plan_slices(svc, pods2, slices)
    assert not plan.create and not plan.delete
    after = apply(plan, slices)
    assert sorted(e["targetRef"]["name"] for e in endpoints_of(after)) == \
        sorted(p["metadata"]["name"] for p in pods2)
    assert all(len(s["endpoints"]) <= 100 for s in after)
    # one pod turns not ready: only the slice holding it is rewritten
    pods3 = list(pods2)
    pods3[0] = pod(pods3[0]["metadata"]["name"], pods3[0]["status"]["podIP"], ready=False)
    plan = plan_slices(svc, pods3, after)
    assert len(plan.update) == 1 and not plan.create and not plan.delete


def test_scale_to_zero_keeps_one_empty_slice() -> None:
    svc = service()
    slices = apply(plan_slices(svc, [pod("a", "10.1.0.1")], []), [])
    plan = plan_slices(svc, [], slices)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["endpoints"] == [] and plan.update[0]["ports"] == []
    emptied = apply(plan, slices)
    assert plan_slices(svc, [], emptied).empty()
    # a brand-new Service without pods gets its placeholder
    assert [s["endpoints"] for s in plan_slices(svc, [], []).create] == [[]]
    # and the placeholder is reused once pods come
    plan = plan_slices(svc, [pod("a", "10.1.0.1")], emptied)
    assert not plan.create and not plan.delete and len(plan.update) == 1


def test_changed_service_ports_rewrite_the_slice_in_place() -> None:
    svc = service()
    pods = [pod("a", "10.1.0.1")]
    slices = apply(plan_slices(svc, pods, []), [])
    svc2 = service(ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8081}])
    plan = plan_slices(svc2, pods, slices)
    assert not plan.create and not plan.delete
    assert plan.update[0]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8081}]
    assert plan.update[0]["metadata"]["name"] == slices[0]["metadata"]["name"]


def test_endpoints_subsets() -> None:
    pods = [pod("b", "10.1.0.2"), pod("a", "10.1.0.1"), pod("c", "10.1.0.3", ready=False),
            pod("t", "10.1.0.4", deleting=True), pod("s", "10.1.0.5", phase="Failed")]
    subsets = desired_subsets(service(), pods)
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.1.0.1", "10.1.0.2"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["10.1.0.3"]
    assert subsets[0]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert subsets[0]["addresses"][0]["targetRef"]["name"] == "a"
    published = desired_subsets(service(publishNotReadyAddresses=True), pods)
    assert [a["ip"] for a in published[0]["addresses"]] == \
        ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"]
    assert desired_subsets(service(), []) == []


def test_endpoints_object_written_only_when_changed() -> None:
    svc = service()
    pods = [pod("a", "10.1.0.1")]
    new = endpoints_object(svc, pods, None)
    assert new is not None
    assert new["metadata"]["name"] == "web"
    assert new["metadata"]["labels"] == {"team": "a",
                                         "endpointslice.kubernetes.io/skip-mirror": "true"}
    stored = {**new, "metadata": {**new["metadata"], "uid": "u", "resourceVersion": "5"}}
    assert endpoints_object(svc, pods, stored) is None
    assert endpoints_object(svc, [], stored)["subsets"] == []  # type: ignore[index]


def test_truncate_keeps_ready_first() -> None:
    subsets = [{"addresses": [{"ip": f"r{i}"} for i in range(3)],
                "notReadyAddresses": [{"ip": f"n{i}"} for i in range(3)]}]
    assert truncate(subsets, capacity=4)
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["r0", "r1", "r2"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["n0"]
    assert not truncate(subsets, capacity=4)


def test_slice_of_an_earlier_namesake_is_replaced() -> None:
    svc = service()
    pods = [pod("a", "10.1.0.1")]
    slices = apply(plan_slices(svc, pods, []), [])
    slices[0]["metadata"]["ownerReferences"][0]["uid"] = "uid-of-an-older-web"
    plan = plan_slices(svc, pods, slices)
    assert not plan.update and len(plan.create) == 1  # another's object is not taken over
    assert [s["metadata"]["name"] for s in plan.delete] == [slices[0]["metadata"]["name"]]
    fixed = apply(plan, slices)
    assert [s["metadata"]["ownerReferences"][0]["uid"] for s in fixed] == ["uid-svc-web"]
    assert plan_slices(svc, pods, fixed).empty()


def test_slice_labels_follow_the_service() -> None:
    svc = service()
    pods = [pod("a", "10.1.0.1")]
    slices = apply(plan_slices(svc, pods, []), [])
    headless = service(clusterIP="None")
    headless["metadata"]["labels"] = {"team": "b"}
    plan = plan_slices(headless, pods, slices)
    assert [s["metadata"]["labels"] for s in plan.update] == [
        {"team": "b", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY,
         "service.kubernetes.io/headless": ""}]
    assert plan_slices(svc, pods, apply(plan_slices(svc, pods, apply(plan, slices)),
                                        apply(plan, slices))).empty()
