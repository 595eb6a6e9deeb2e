"""Host-gw routes: which routes a node wants, from the Node objects."""

from __future__ import annotations

from typing import Any

from pinnace.agent.network.routes import desired_routes, masquerade_table


def node(name: str, cidr: str | None, ip: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []}}


def test_a_route_to_every_other_nodes_pod_cidr_via_its_internal_ip() -> None:
    nodes = [node("a", "10.42.0.0/24", "10.43.0.1"), node("b", "10.42.1.0/24", "10.43.0.2"),
             node("c", "10.42.2.0/24", "10.43.0.3"),
             node("no-cidr-yet", None, "10.43.0.4"), node("no-ip-yet", "10.42.4.0/24", None),
             node("loopback", "10.42.5.0/24", "127.0.0.1")]
    assert desired_routes(nodes, "a") == {"10.42.1.0/24": "10.43.0.2",
                                          "10.42.2.0/24": "10.43.0.3"}
    assert desired_routes(nodes, "b") == {"10.42.0.0/24": "10.43.0.1",
                                          "10.42.2.0/24": "10.43.0.3"}


def test_pod_traffic_leaving_the_cluster_cidr_is_masqueraded() -> None:
    table = masquerade_table("pinnace-net-x", "10.200.1.0/24",
                             ["10.42.0.0/16", "10.200.1.0/24", "10.42.3.0/24"])
    # pod to pod (this node's, other nodes') keeps its source address
    assert "ip saddr 10.200.1.0/24 ip daddr != { 10.42.0.0/16, 10.200.1.0/24 }" in table
    assert table.startswith("table ip pinnace-net-x\ndelete table ip pinnace-net-x\n")
