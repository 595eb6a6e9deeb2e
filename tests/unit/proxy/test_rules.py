"""What one Service puts in the service table: a pure function of it and its EndpointSlices
(no host)."""

from __future__ import annotations

from typing import Any

from pinnace.proxy.rules import (
    ServiceRules,
    base_table,
    chain_hash,
    delete_ruleset,
    service_ports,
    service_rules,
)

CIDR = "10.1.2.0/24"


def service(name: str = "web", *, ns: str = "default", ip: str = "10.96.0.20",
            type_: str = "NodePort", ports: list[dict[str, Any]] | None = None,
            **spec: Any) -> dict[str, Any]:
    spec = {"type": type_, "ports": ports if ports is not None else [
        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}], **spec}
    if ip:
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def endpoint(ip: str, node: str = "", **conditions: bool) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if node:
        ep["nodeName"] = node
    return ep


def eslice(endpoints: list[dict[str, Any]], *, svc: str = "web", ns: str = "default",
           name: str = "web-1", port: int = 8080, port_name: str = "http",
           protocol: str = "TCP", address_type: str = "IPv4") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type,
            "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": endpoints}


def rules_of(svc: dict[str, Any] | None, slices: list[dict[str, Any]],
             node_name: str = "node-a") -> ServiceRules:
    return service_rules(svc, slices, pod_cidr=CIDR, node_name=node_name)


def chain(rules: ServiceRules, name: str) -> list[str]:
    assert name in rules.chains, f"no chain {name}: {sorted(rules.chains)}"
    return list(rules.chains[name][1])


H = chain_hash("default/web/http/TCP")
# NodePort / external traffic, policy Cluster: masqueraded unless this node is the client
EXT_CLUSTER = ["fib saddr type != local jump mark-for-masquerade", f"goto svc-{H}"]


def test_one_service_with_one_endpoint() -> None:
    rules = rules_of(service(), [eslice([endpoint("10.1.2.5", ready=True)])])
    assert rules.elements == {
        "cluster-ips": {"10.96.0.20": ""},
        "service-ips": {"10.96.0.20 . tcp . 80": f"goto svc-{H}"},
        "service-nodeports": {"tcp . 30080": f"goto ext-{H}"},
        "hairpin": {"10.1.2.5 . 10.1.2.5": ""}}
    assert chain(rules, f"svc-{H}") == [
        "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.1.2.0/24 fib saddr type != local "
        "jump mark-for-masquerade",
        "meta l4proto tcp dnat to 10.1.2.5:8080"]
    assert rules.chains[f"svc-{H}"][0] == "default/web/http/TCP"  # the comment
    assert chain(rules, f"ext-{H}") == EXT_CLUSTER
    assert rules.route_localnet  # a NodePort: 127.0.0.1 too


def test_endpoints_are_chosen_uniformly_by_a_numgen_cascade() -> None:
    rules = rules_of(service(), [eslice([endpoint("10.1.2.5", ready=True),
                                         endpoint("10.1.2.6"),  # ready unset = ready
                                         endpoint("10.1.2.7")])])
    assert chain(rules, f"svc-{H}")[1:] == [
        "numgen random mod 3 == 0 meta l4proto tcp dnat to 10.1.2.5:8080",
        "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.1.2.6:8080",
        "meta l4proto tcp dnat to 10.1.2.7:8080"]
    assert set(rules.elements["hairpin"]) == {
        "10.1.2.5 . 10.1.2.5", "10.1.2.6 . 10.1.2.6", "10.1.2.7 . 10.1.2.7"}
    # only this node's pods (its pod CIDR) can reach themselves through this node
    elsewhere = rules_of(service(), [eslice([endpoint("10.1.2.5"), endpoint("10.1.3.5")])])
    assert elsewhere.elements["hairpin"] == {"10.1.2.5 . 10.1.2.5": ""}


def test_without_endpoints_the_addresses_are_rejected() -> None:
    svc = service(externalIPs=["192.0.2.7"])
    rules = rules_of(svc, [eslice([endpoint("10.1.2.5", ready=False)])])
    assert rules.chains == {} and not rules.route_localnet
    assert rules.elements == {
        "cluster-ips": {"10.96.0.20": ""},
        "no-endpoint-services": {"10.96.0.20 . tcp . 80": "goto reject-chain",
                                 "192.0.2.7 . tcp . 80": "goto reject-chain"},
        "no-endpoint-nodeports": {"tcp . 30080": "goto reject-chain"}}


def test_serving_terminating_endpoints_only_when_none_is_ready() -> None:
    going = endpoint("10.1.2.7", ready=False, serving=True, terminating=True)
    not_serving = endpoint("10.1.2.8", ready=False, serving=False, terminating=True)
    only_going = service_ports([service()], [eslice([going, not_serving])])
    assert [e.ip for e in only_going[0].endpoints] == ["10.1.2.7"]
    both = service_ports([service()], [eslice([going, endpoint("10.1.2.5", ready=True)])])
    assert [e.ip for e in both[0].endpoints] == ["10.1.2.5"]


def test_external_name_and_headless_services_get_no_rules() -> None:
    for svc in (service("ext", type_="ExternalName", ip=""),
                service("headless", type_="ClusterIP", ip="None", ports=[{"port": 80}]),
                service("pending", ip="")):
        name = svc["metadata"]["name"]
        assert rules_of(svc, [eslice([endpoint("10.1.2.5")], svc=name)]) == ServiceRules()
    assert rules_of(None, []) == ServiceRules()  # a deleted Service


def test_slices_match_by_service_namespace_port_name_and_protocol() -> None:
    services = [service(ports=[
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}])]
    slices = [
        eslice([endpoint("10.1.2.5")], name="a"),
        eslice([endpoint("10.1.2.5")], name="dup"),  # the same address twice: once
        eslice([endpoint("10.1.2.9")], name="b", port=5353, port_name="dns",
               protocol="UDP"),
        eslice([endpoint("10.1.2.10")], name="other-svc", svc="api"),
        eslice([endpoint("10.1.2.11")], name="other-ns", ns="kube-system"),
        eslice([endpoint("fd00::1")], name="v6", address_type="IPv6"),
    ]
    by_port = {sp.port: sp for sp in service_ports(services, slices)}
    assert [(e.ip, e.port) for e in by_port[80].endpoints] == [("10.1.2.5", 8080)]
    assert [(e.ip, e.port) for e in by_port[53].endpoints] == [("10.1.2.9", 5353)]
    rules = rules_of(services[0], slices)
    udp = chain_hash("default/web/dns/UDP")
    assert rules.elements["service-ips"]["10.96.0.20 . udp . 53"] == f"goto svc-{udp}"
    assert rules.elements["service-nodeports"] == {"udp . 30053": f"goto ext-{udp}"}
    assert chain(rules, f"svc-{udp}")[-1] == "meta l4proto udp dnat to 10.1.2.9:5353"


def test_chain_names_are_short_and_stable() -> None:
    one = rules_of(service(), [eslice([endpoint("10.1.2.5")])])
    assert one == rules_of(service(), [eslice([endpoint("10.1.2.5")])])
    assert set(one.chains) == {f"svc-{H}", f"ext-{H}"}
    assert all(len(n) <= 14 for n in one.chains)


def test_client_ip_affinity_sends_a_known_client_back_to_its_endpoint() -> None:
    svc = service(sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rules = rules_of(svc, [eslice([endpoint("10.1.2.5", ready=True),
                                   endpoint("10.1.2.6", ready=True)])])
    a5 = "affinity-" + chain_hash("default/web/http/TCP/10.1.2.5:8080/60")
    a6 = "affinity-" + chain_hash("default/web/http/TCP/10.1.2.6:8080/60")
    assert rules.sets == {a5: 60, a6: 60}
    # the remembered endpoints first, then the random choice for new clients; either way
    # the client is remembered (again) where it goes
    assert chain(rules, f"svc-{H}")[1:] == [
        f"ip saddr @{a5} meta l4proto tcp update @{a5} {{ ip saddr }} dnat to 10.1.2.5:8080",
        f"ip saddr @{a6} meta l4proto tcp update @{a6} {{ ip saddr }} dnat to 10.1.2.6:8080",
        f"numgen random mod 2 == 0 meta l4proto tcp update @{a5} {{ ip saddr }} "
        f"dnat to 10.1.2.5:8080",
        f"meta l4proto tcp update @{a6} {{ ip saddr }} dnat to 10.1.2.6:8080"]
    default = rules_of(service(sessionAffinity="ClientIP"), [eslice([endpoint("10.1.2.5")])])
    assert list(default.sets.values()) == [10800]
    assert rules_of(service(), [eslice([endpoint("10.1.2.5")])]).sets == {}


def test_external_ips_and_load_balancer_addresses_answer_as_external_traffic() -> None:
    svc = service(type_="LoadBalancer", externalIPs=["192.0.2.7", "fd00::7"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "127.240.0.3"},
                                                  {"hostname": "lb.example"}]}}
    rules = rules_of(svc, [eslice([endpoint("10.1.2.5")])])
    assert rules.elements["service-ips"] == {
        "10.96.0.20 . tcp . 80": f"goto svc-{H}",
        "192.0.2.7 . tcp . 80": f"goto ext-{H}",
        "127.240.0.3 . tcp . 80": f"goto ext-{H}"}
    assert chain(rules, f"ext-{H}") == EXT_CLUSTER
    # only a LoadBalancer's status counts
    other = service(type_="NodePort")
    other["status"] = svc["status"]
    assert "127.240.0.3 . tcp . 80" not in rules_of(
        other, [eslice([endpoint("10.1.2.5")])]).elements["service-ips"]


def test_a_load_balancer_without_node_port_and_its_loopback_address() -> None:
    svc = service(type_="LoadBalancer", ports=[{"name": "http", "port": 80}],
                  allocateLoadBalancerNodePorts=False)
    assert not rules_of(svc, [eslice([endpoint("10.1.2.5")])]).route_localnet
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "127.240.0.3"}]}}
    rules = rules_of(svc, [eslice([endpoint("10.1.2.5")])])
    assert "service-nodeports" not in rules.elements
    assert rules.elements["service-ips"]["127.240.0.3 . tcp . 80"] == f"goto ext-{H}"
    assert rules.route_localnet  # 127.240.0.3 from the host reaches a pod


def test_external_traffic_policy_local() -> None:
    svc = service(externalTrafficPolicy="Local", externalIPs=["192.0.2.7"])
    slices = [eslice([endpoint("10.1.2.5", node="node-a"),
                      endpoint("10.1.2.6", node="node-b")])]
    rules = rules_of(svc, slices)
    # ClusterIP traffic: every endpoint
    assert rules.elements["service-ips"]["10.96.0.20 . tcp . 80"] == f"goto svc-{H}"
    assert chain(rules, f"svc-{H}")[1:] == [
        "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.1.2.5:8080",
        "meta l4proto tcp dnat to 10.1.2.6:8080"]
    # external traffic: this node's endpoint, not masqueraded, unless it comes from a pod
    # or from the node itself
    assert rules.elements["service-nodeports"]["tcp . 30080"] == f"goto ext-{H}"
    assert chain(rules, f"ext-{H}") == [
        f"ip saddr 10.1.2.0/24 goto svc-{H}", f"fib saddr type local goto svc-{H}",
        f"goto loc-{H}"]
    assert chain(rules, f"loc-{H}") == ["meta l4proto tcp dnat to 10.1.2.5:8080"]
    # no endpoint on this node: external traffic is dropped, ClusterIP traffic still served
    elsewhere = rules_of(svc, slices, node_name="node-c")
    assert elsewhere.elements["no-endpoint-nodeports"] == {"tcp . 30080": "drop"}
    assert elsewhere.elements["no-endpoint-services"] == {"192.0.2.7 . tcp . 80": "drop"}
    assert elsewhere.elements["service-ips"] == {"10.96.0.20 . tcp . 80": f"goto svc-{H}"}
    assert set(elsewhere.chains) == {f"svc-{H}"}
    # a terminating local endpoint serves when no local one is ready
    going = endpoint("10.1.2.7", node="node-c", ready=False, serving=True, terminating=True)
    fallback = rules_of(svc, [eslice([*slices[0]["endpoints"], going])], node_name="node-c")
    assert chain(fallback, f"loc-{H}") == ["meta l4proto tcp dnat to 10.1.2.7:8080"]


def test_internal_traffic_policy_local() -> None:
    svc = service(internalTrafficPolicy="Local")
    slices = [eslice([endpoint("10.1.2.5", node="node-a"),
                      endpoint("10.1.2.6", node="node-b")])]
    rules = rules_of(svc, slices)
    assert rules.elements["service-ips"] == {"10.96.0.20 . tcp . 80": f"goto loc-{H}"}
    assert chain(rules, f"loc-{H}") == [
        "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.1.2.0/24 fib saddr type != local "
        "jump mark-for-masquerade",
        "meta l4proto tcp dnat to 10.1.2.5:8080"]
    # NodePort traffic (policy Cluster): every endpoint
    assert chain(rules, f"ext-{H}") == EXT_CLUSTER
    assert len(chain(rules, f"svc-{H}")) == 2
    elsewhere = rules_of(svc, slices, node_name="node-c")
    assert elsewhere.elements["no-endpoint-services"] == {"10.96.0.20 . tcp . 80": "drop"}
    assert "service-ips" not in elsewhere.elements
    # without any endpoint: rejected, whatever the policy
    none = rules_of(svc, [])
    assert none.elements["no-endpoint-services"] == {
        "10.96.0.20 . tcp . 80": "goto reject-chain"}


def test_the_fixed_part_of_the_table() -> None:
    text = base_table("pinnace-svc-abc", bridge="pnabc")
    assert text.startswith("table ip pinnace-svc-abc {")
    # the route_localnet guard of CVE-2020-8558
    assert 'iifname "pnabc" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop' in text
    # a ClusterIP on a port its Service lacks: rejected after DNAT (output and forward)
    assert "type filter hook output priority -90; policy accept;\n" \
           "    ct state new jump cluster-ips-check" in text
    assert "ip daddr @cluster-ips goto reject-chain" in text
    # hairpin: a pod reaching itself through its Service is masqueraded
    assert "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade" in text
    # and whatever was DNATed from 127.0.0.0/8 (a pod cannot answer that address)
    assert "ct status dnat ip saddr 127.0.0.0/8 jump mark-for-masquerade" in text
    assert "masquerade fully-random" in text


def test_delete_ruleset_removes_only_the_table() -> None:
    assert delete_ruleset("t") == "table ip t\ndelete table ip t\n"
