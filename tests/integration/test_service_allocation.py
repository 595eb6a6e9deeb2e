"""Service allocation as Kubernetes has it, through the real API server and kubectl:
ClusterIPs and node ports allocated, refused (taken, out of range: 422 naming the field)
and released on every type change ExternalName ↔ ClusterIP ↔ NodePort ↔ LoadBalancer,
so that what one Service gave back another can take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.conftest import Api, run_kubectl

SVCS = "/api/v1/namespaces/default/services"
MERGE = {"Content-Type": "application/merge-patch+json"}


def service(name: str, svc_type: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": svc_type, "selector": {"app": name},
                            "ports": [{"port": 80, "targetPort": 8080}]}
    if "node_port" in spec:
        body["ports"][0]["nodePort"] = spec.pop("node_port")
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


async def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    status, out = await api.request("POST", SVCS, json=body)
    assert status == 201, out
    return out


async def patch(api: Api, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    status, out = await api.request("PATCH", f"{SVCS}/{name}", headers=MERGE,
                                    json={"spec": spec})
    assert status == 200, out
    return out


async def refused(api: Api, body: dict[str, Any]) -> list[tuple[str, str]]:
    status, out = await api.request("POST", SVCS, json=body)
    assert status == 422, out
    assert out["kind"] == "Status" and out["reason"] == "Invalid"
    return [(c["field"], c["message"]) for c in out["details"]["causes"]]


async def kubectl(api: Api, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    return await run_kubectl(api.server.write_kubeconfig(), *args, home=tmp_path)


async def test_node_port_taken_or_out_of_range_is_422_naming_the_port(api: Api) -> None:
    first = await create(api, service("first", "NodePort", node_port=31001))
    assert first["spec"]["ports"][0]["nodePort"] == 31001
    causes = await refused(api, service("second", "NodePort", node_port=31001))
    assert causes == [("spec.ports[0].nodePort",
                       "Invalid value: 31001: provided port is already allocated")]
    for bad in (80, 32768):
        causes = await refused(api, service("third", "NodePort", node_port=bad))
        assert [f for f, _ in causes] == ["spec.ports[0].nodePort"]
        assert "provided port is not in the valid range. The range of valid ports is " \
               "30000-32767" in causes[0][1]
    # the second of two ports clashing with another Service names its own index
    two = service("fourth", "NodePort")
    two["spec"]["ports"] = [{"name": "a", "port": 80}, {"name": "b", "port": 81,
                                                         "nodePort": 31001}]
    assert [f for f, _ in await refused(api, two)] == ["spec.ports[1].nodePort"]


async def test_kubectl_sees_the_422(api: Api, tmp_path: Path) -> None:
    await create(api, service("web", "NodePort", node_port=31001))
    rc, _, err = await kubectl(api, tmp_path, "create", "service", "nodeport", "web2",
                               "--tcp=80:8080", "--node-port=31001")
    assert rc != 0
    assert 'Service "web2" is invalid: spec.ports[0].nodePort: Invalid value: 31001: ' \
           "provided port is already allocated" in err, err
    rc, _, err = await kubectl(api, tmp_path, "create", "service", "nodeport", "web3",
                               "--tcp=80:8080", "--node-port=40000")
    assert rc != 0 and "spec.ports[0].nodePort: Invalid value: 40000" in err, err


async def test_headless(api: Api, tmp_path: Path) -> None:
    rc, out, err = await kubectl(api, tmp_path, "create", "service", "clusterip", "headless",
                                 "--clusterip=None", "-o", "json")
    assert rc == 0, err
    assert json.loads(out)["spec"]["clusterIP"] == "None"
    assert json.loads(out)["spec"]["clusterIPs"] == ["None"]
    # headless is for the ClusterIP type alone
    causes = await refused(api, service("hl-np", "NodePort", clusterIP="None"))
    assert causes == [("spec.clusterIPs[0]",
                       "Invalid value: \"None\": may not be set to 'None' for NodePort services")]


async def test_type_changes_allocate_and_release(api: Api, tmp_path: Path) -> None:
    # ExternalName: no ClusterIP
    ext = await create(api, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                             "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert "clusterIP" not in ext["spec"]
    # → ClusterIP: one is allocated
    s = await patch(api, "s", {"type": "ClusterIP", "externalName": None,
                               "ports": [{"port": 80, "targetPort": 8080}]})
    ip = s["spec"]["clusterIP"]
    assert ip and ip != "None" and s["spec"]["clusterIPs"] == [ip]
    # → NodePort (kubectl's strategic merge patch): a node port, the same ClusterIP
    rc, out, err = await kubectl(api, tmp_path, "patch", "svc", "s", "-o", "json",
                                 "-p", '{"spec":{"type":"NodePort"}}')
    assert rc == 0, err
    s = json.loads(out)
    port = s["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767 and s["spec"]["clusterIP"] == ip
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    # → LoadBalancer: keeps both
    s = await patch(api, "s", {"type": "LoadBalancer"})
    assert s["spec"]["ports"][0]["nodePort"] == port and s["spec"]["clusterIP"] == ip
    assert s["spec"]["allocateLoadBalancerNodePorts"] is True
    # → NodePort: keeps the port, forgets the LoadBalancer-only field
    s = await patch(api, "s", {"type": "NodePort"})
    assert s["spec"]["ports"][0]["nodePort"] == port
    assert "allocateLoadBalancerNodePorts" not in s["spec"]
    # → ClusterIP: the port is released, and another Service can take it
    rc, out, err = await kubectl(api, tmp_path, "patch", "svc", "s", "-o", "json",
                                 "-p", '{"spec":{"type":"ClusterIP"}}')
    assert rc == 0, err
    s = json.loads(out)
    assert "nodePort" not in s["spec"]["ports"][0] and s["spec"]["clusterIP"] == ip
    assert "externalTrafficPolicy" not in s["spec"]
    taker = await create(api, service("taker", "NodePort", node_port=port))
    assert taker["spec"]["ports"][0]["nodePort"] == port
    # → ExternalName (kubectl): the ClusterIP is released, and another Service can take it
    rc, out, err = await kubectl(
        api, tmp_path, "patch", "svc", "s", "-o", "json",
        "-p", '{"spec":{"type":"ExternalName","externalName":"example.com"}}')
    assert rc == 0, err
    s = json.loads(out)
    assert "clusterIP" not in s["spec"] and "clusterIPs" not in s["spec"]
    again = await create(api, service("ip-taker", clusterIP=ip))
    assert again["spec"]["clusterIP"] == ip
    # LoadBalancer → ExternalName releases the node port too
    lb = await create(api, service("lb", "LoadBalancer"))
    lb_port = lb["spec"]["ports"][0]["nodePort"]
    s = await patch(api, "lb", {"type": "ExternalName", "externalName": "example.com"})
    assert "nodePort" not in s["spec"]["ports"][0] and "clusterIP" not in s["spec"]
    await create(api, service("lb-port-taker", "NodePort", node_port=lb_port))
    # ExternalName → LoadBalancer at once: a ClusterIP and a node port (not the taken one)
    s = await patch(api, "lb", {"type": "LoadBalancer", "externalName": None})
    assert s["spec"]["clusterIP"] not in (None, "None", ip)
    assert s["spec"]["ports"][0]["nodePort"] not in (None, lb_port)


async def test_a_changed_node_port_frees_the_old_one(api: Api) -> None:
    await create(api, service("mover", "NodePort", node_port=30500))
    s = await patch(api, "mover", {"ports": [{"port": 80, "targetPort": 8080,
                                              "nodePort": 30501}]})
    assert s["spec"]["ports"][0]["nodePort"] == 30501
    await create(api, service("follower", "NodePort", node_port=30500))
    assert [f for f, _ in await refused(api, service("late", "NodePort", node_port=30501))] \
        == ["spec.ports[0].nodePort"]


async def test_a_put_without_node_port_keeps_it(api: Api) -> None:
    s = await create(api, service("kept", "NodePort"))
    port = s["spec"]["ports"][0]["nodePort"]
    body = service("kept", "NodePort")
    body["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"]
    status, out = await api.request("PUT", f"{SVCS}/kept", json=body)
    assert status == 200, out
    assert out["spec"]["ports"][0]["nodePort"] == port


async def test_load_balancer_without_node_ports(api: Api) -> None:
    s = await create(api, service("lb", "LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in s["spec"]["ports"][0]
    assert s["spec"]["clusterIP"]
    # a port the client names is still allocated (and held)
    s = await patch(api, "lb", {"ports": [{"port": 80, "targetPort": 8080,
                                           "nodePort": 30600}]})
    assert s["spec"]["ports"][0]["nodePort"] == 30600
    assert [f for f, _ in await refused(api, service("x", "NodePort", node_port=30600))] \
        == ["spec.ports[0].nodePort"]
    # the field belongs to LoadBalancers alone
    causes = await refused(api, service("np", "NodePort", allocateLoadBalancerNodePorts=False))
    assert causes == [("spec.allocateLoadBalancerNodePorts",
                       "Forbidden: may only be used when `type` is 'LoadBalancer'")]


async def test_health_check_node_port_for_local_load_balancers(api: Api) -> None:
    s = await create(api, service("local", "LoadBalancer", externalTrafficPolicy="Local"))
    health = s["spec"]["healthCheckNodePort"]
    assert 30000 <= health <= 32767 and health != s["spec"]["ports"][0]["nodePort"]
    assert [f for f, _ in await refused(api, service("y", "NodePort", node_port=health))] \
        == ["spec.ports[0].nodePort"]
    s = await patch(api, "local", {"externalTrafficPolicy": "Cluster"})
    assert "healthCheckNodePort" not in s["spec"]
    await create(api, service("z", "NodePort", node_port=health))
