"""The service table's text as a pure function of Services and EndpointSlices (no host)."""

from __future__ import annotations

import re
from typing import Any

from pinnace.proxy.rules import chain_hash, delete_ruleset, ruleset, service_ports

TABLE = "pinnace-svc-abc"
CIDR = "10.1.2.0/24"


def service(name: str = "web", *, ns: str = "default", ip: str = "10.96.0.20",
            type_: str = "NodePort", ports: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": ports if ports is not None else [
        {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}
    if ip:
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def endpoint(ip: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def eslice(endpoints: list[dict[str, Any]], *, svc: str = "web", ns: str = "default",
           name: str = "web-1", port: int = 8080, port_name: str = "http",
           protocol: str = "TCP", address_type: str = "IPv4") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type,
            "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": endpoints}


def text(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> str:
    return ruleset(TABLE, services=services, slices=slices, pod_cidr=CIDR, bridge="pnabc")


def chain(rules: str, name: str) -> str:
    m = re.search(rf"  chain {re.escape(name)} {{\n(.*?)\n  }}", rules, re.S)
    assert m, f"no chain {name}"
    return m.group(1)


def elements(rules: str, map_name: str) -> str:
    m = re.search(rf"  map {map_name} {{\n.*?\n(?:    elements = {{ (.*?) }}\n)?  }}",
                  rules, re.S)
    assert m, f"no map {map_name}"
    return m.group(1) or ""


H = chain_hash("default/web/http/TCP")


def test_one_service_with_one_endpoint() -> None:
    rules = text([service()], [eslice([endpoint("10.1.2.5", ready=True)])])
    assert rules.startswith(f"table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{")
    assert elements(rules, "service-ips") == f"10.96.0.20 . tcp . 80 : goto svc-{H}"
    assert elements(rules, "service-nodeports") == f"tcp . 30080 : goto ext-{H}"
    assert elements(rules, "no-endpoint-services") == ""
    ep = chain_hash("default/web/http/TCP/10.1.2.5:8080")
    svc = chain(rules, f"svc-{H}")
    assert ("ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.1.2.0/24 "
            "jump mark-for-masquerade") in svc
    assert f"numgen random mod 1 vmap {{ 0 : goto ep-{ep} }}" in svc
    assert chain(rules, f"ep-{ep}").splitlines()[1:] == [
        "    ip saddr 10.1.2.5 jump mark-for-masquerade",  # hairpin
        "    meta l4proto tcp dnat to 10.1.2.5:8080"]
    assert chain(rules, f"ext-{H}").splitlines()[1:] == [
        "    jump mark-for-masquerade", f"    goto svc-{H}"]
    # NodePorts on every local address, 127.0.0.1 included; masquerade by mark
    assert "fib daddr type local meta l4proto . th dport vmap @service-nodeports" in \
        chain(rules, "services")
    assert "masquerade fully-random" in chain(rules, "masquerading")
    assert "meta mark & 0x4000 == 0 return" in chain(rules, "masquerading")
    # the route_localnet guard of CVE-2020-8558
    assert 'iifname "pnabc" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop' in \
        chain(rules, "filter-input")


def test_endpoints_are_balanced_by_numgen() -> None:
    rules = text([service()], [eslice([endpoint("10.1.2.5", ready=True),
                                       endpoint("10.1.2.6")])])  # ready unset = ready
    a = chain_hash("default/web/http/TCP/10.1.2.5:8080")
    b = chain_hash("default/web/http/TCP/10.1.2.6:8080")
    assert f"numgen random mod 2 vmap {{ 0 : goto ep-{a}, 1 : goto ep-{b} }}" in \
        chain(rules, f"svc-{H}")


def test_without_endpoints_the_addresses_are_rejected_in_the_filter_hooks() -> None:
    rules = text([service()], [eslice([endpoint("10.1.2.5", ready=False)])])
    assert elements(rules, "service-ips") == ""
    assert elements(rules, "service-nodeports") == ""
    assert elements(rules, "no-endpoint-services") == "10.96.0.20 . tcp . 80 : goto reject-chain"
    assert elements(rules, "no-endpoint-nodeports") == "tcp . 30080 : goto reject-chain"
    assert f"svc-{H}" not in rules
    assert chain(rules, "reject-chain").splitlines() == [
        "    meta l4proto tcp reject with tcp reset", "    reject"]
    for hook in ("input", "forward", "output"):
        filt = chain(rules, f"filter-{hook}")
        assert f"type filter hook {hook} priority -110;" in filt
        assert "ct state new jump service-endpoints-check" in filt
    assert "ct state new jump nodeport-endpoints-check" in chain(rules, "filter-input")
    # not in prerouting: reject is not allowed there
    assert "endpoints-check" not in chain(rules, "nat-prerouting")


def test_serving_terminating_endpoints_only_when_none_is_ready() -> None:
    going = endpoint("10.1.2.7", ready=False, serving=True, terminating=True)
    not_serving = endpoint("10.1.2.8", ready=False, serving=False, terminating=True)
    only_going = service_ports([service()], [eslice([going, not_serving])])
    assert [e.ip for e in only_going[0].endpoints] == ["10.1.2.7"]
    both = service_ports([service()], [eslice([going, endpoint("10.1.2.5", ready=True)])])
    assert [e.ip for e in both[0].endpoints] == ["10.1.2.5"]


def test_external_name_and_headless_services_get_no_rules() -> None:
    services = [service("ext", type_="ExternalName", ip=""),
                service("headless", type_="ClusterIP", ip="None",
                        ports=[{"port": 80}]),
                service("pending", ip="")]
    slices = [eslice([endpoint("10.1.2.5")], svc=s) for s in ("ext", "headless", "pending")]
    assert service_ports(services, slices) == []
    rules = text(services, slices)
    assert "elements" not in rules and "chain svc-" not in rules


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
    rules = text(services, slices)
    udp = chain_hash("default/web/dns/UDP")
    assert f"10.96.0.20 . udp . 53 : goto svc-{udp}" in elements(rules, "service-ips")
    assert f"udp . 30053 : goto ext-{udp}" in elements(rules, "service-nodeports")
    assert "meta l4proto udp dnat to 10.1.2.9:5353" in rules


def test_chain_names_are_stable_and_the_text_deterministic() -> None:
    one = text([service()], [eslice([endpoint("10.1.2.5")])])
    assert one == text([service()], [eslice([endpoint("10.1.2.5")])])
    more = text([service("zz", ip="10.96.0.30"), service()],
                [eslice([endpoint("10.1.2.5")]), eslice([endpoint("10.1.2.6")], svc="zz")])
    assert chain(one, f"svc-{H}") == chain(more, f"svc-{H}")
    per_service = re.findall(r"chain ((?:svc|ext|ep)-\S+) {", more)
    assert len(per_service) == 6 and all(len(n) <= 14 for n in per_service)


def test_delete_ruleset_removes_only_the_table() -> None:
    assert delete_ruleset(TABLE) == f"table ip {TABLE}\ndelete table ip {TABLE}\n"


def test_client_ip_affinity_sends_a_known_client_back_to_its_endpoint() -> None:
    svc = service()
    svc["spec"]["sessionAffinity"] = "ClientIP"
    svc["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    rules = text([svc], [eslice([endpoint("10.1.2.5", ready=True),
                                 endpoint("10.1.2.6", ready=True)])])
    e5 = chain_hash("default/web/http/TCP/10.1.2.5:8080")
    e6 = chain_hash("default/web/http/TCP/10.1.2.6:8080")
    for eh in (e5, e6):
        assert f"  set affinity-{eh} {{\n    type ipv4_addr\n    flags dynamic,timeout\n" \
               f"    timeout 60s\n  }}\n" in rules
        assert f"update @affinity-{eh} {{ ip saddr }}" in chain(rules, f"ep-{eh}")
    lines = chain(rules, f"svc-{H}").splitlines()[1:]  # after the comment
    # the remembered endpoints first, then the random choice for new clients
    assert [ln.strip() for ln in lines[1:3]] == [f"ip saddr @affinity-{e5} goto ep-{e5}",
                                                f"ip saddr @affinity-{e6} goto ep-{e6}"]
    assert lines[3].strip().startswith("numgen random mod 2")
    default = service()
    default["spec"]["sessionAffinity"] = "ClientIP"
    assert "timeout 10800s" in text([default], [eslice([endpoint("10.1.2.5", ready=True)])])
    assert "affinity" not in text([service()], [eslice([endpoint("10.1.2.5", ready=True)])])
