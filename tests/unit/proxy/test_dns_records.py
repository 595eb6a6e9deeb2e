"""The cluster DNS records (CoreDNS' kubernetes plugin's answers) from Services and
EndpointSlices, asked with dnslib queries as a client would."""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from pinnace.proxy.dns_forward import upstreams_from_resolv_conf
from pinnace.proxy.dns_records import DnsIndex, service_records


def service(name: str, cluster_ip: str = "10.96.0.20", ns: str = "default",
            ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ports": ports if ports is not None else
                     [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 80}],
                     **spec}}


def endpoint_slice(svc: str, endpoints: list[dict[str, Any]], ns: str = "default",
                   name: str = "", ports: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    return {"metadata": {"name": name or f"{svc}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports if ports is not None else
            [{"name": "http", "port": 80, "protocol": "TCP"}]}


def ep(ip: str, ready: bool | None = True, hostname: str = "") -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    return e


def ask(index: DnsIndex, name: str, qtype: str = "A") -> DNSRecord | None:
    reply = index.answer(DNSRecord.question(name, qtype))
    # what goes on the wire must parse back to the same answer
    return DNSRecord.parse(reply.pack()) if reply is not None else None


def rdata(reply: DNSRecord | None, qtype: str = "") -> list[str]:
    assert reply is not None
    return sorted(str(rr.rdata) for rr in reply.rr
                  if not qtype or QTYPE[rr.rtype] == qtype)


@pytest.fixture
def index() -> DnsIndex:
    idx = DnsIndex()
    idx.update_service("default/nginx", service("nginx"), [endpoint_slice("nginx", [
        ep("10.42.0.5"), ep("10.42.0.6", ready=False)])])
    idx.update_service("default/db", service(
        "db", "None", ports=[{"name": "pg", "port": 5432}]),
        [endpoint_slice("db", [ep("10.42.0.7", hostname="db-0"), ep("10.42.0.8"),
                               ep("10.42.0.9", ready=False)],
                        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])])
    idx.update_service("other/ext", service(
        "ext", "", ns="other", type="ExternalName", externalName="example.org."), [])
    return idx


def test_cluster_ip_service_has_an_a_record_with_ttl_5(index: DnsIndex) -> None:
    reply = ask(index, "nginx.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert rdata(reply) == ["10.96.0.20"]
    assert [rr.ttl for rr in reply.rr] == [5]


def test_names_are_case_insensitive_and_echo_the_question(index: DnsIndex) -> None:
    reply = ask(index, "NGINX.Default.svc.Cluster.Local.")
    assert rdata(reply) == ["10.96.0.20"]
    assert str(reply.rr[0].rname) == "NGINX.Default.svc.Cluster.Local."


def test_known_name_without_the_type_is_nodata_with_soa(index: DnsIndex) -> None:
    reply = ask(index, "nginx.default.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
    assert reply.auth[0].rdata.times[-1] == 5  # negative answers are kept 5 s too


def test_unknown_names_in_the_zone_are_nxdomain(index: DnsIndex) -> None:
    for name in ("nope.default.svc.cluster.local", "nginx.nope.svc.cluster.local",
                 "nginx.default.svc.cluster.local.default.svc.cluster.local",
                 "10-42-0-6.nginx.default.svc.cluster.local",  # not ready
                 "x.cluster.local"):
        reply = ask(index, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


def test_empty_non_terminals_and_the_apex_exist(index: DnsIndex) -> None:
    for name in ("cluster.local", "svc.cluster.local", "default.svc.cluster.local",
                 "pod.cluster.local"):
        reply = ask(index, name)
        assert reply.header.rcode == RCODE.NOERROR and reply.rr == [], name
    assert rdata(ask(index, "cluster.local", "SOA"), "SOA")[0].startswith(
        "ns.dns.cluster.local. hostmaster.cluster.local.")
    assert rdata(ask(index, "cluster.local", "NS")) == ["ns.dns.cluster.local."]


def test_headless_service_answers_its_ready_endpoints(index: DnsIndex) -> None:
    assert rdata(ask(index, "db.default.svc.cluster.local")) == ["10.42.0.7", "10.42.0.8"]
    # an endpoint with a hostname (hostname + subdomain pods, StatefulSets) has its name;
    # one without is named by its address
    assert rdata(ask(index, "db-0.db.default.svc.cluster.local")) == ["10.42.0.7"]
    assert rdata(ask(index, "10-42-0-8.db.default.svc.cluster.local")) == ["10.42.0.8"]


def test_headless_service_without_ready_endpoints_is_nxdomain() -> None:
    idx = DnsIndex()
    idx.update_service("default/db", service("db", "None"),
                       [endpoint_slice("db", [ep("10.42.0.9", ready=False)])])
    assert ask(idx, "db.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_an_endpoint_without_a_ready_condition_counts_as_ready() -> None:
    idx = DnsIndex()
    idx.update_service("default/db", service("db", "None"),
                       [endpoint_slice("db", [ep("10.42.0.9", ready=None)])])
    assert rdata(ask(idx, "db.default.svc.cluster.local")) == ["10.42.0.9"]


def test_srv_for_a_named_port(index: DnsIndex) -> None:
    reply = ask(index, "_http._tcp.nginx.default.svc.cluster.local", "SRV")
    assert rdata(reply, "SRV") == ["0 100 8080 nginx.default.svc.cluster.local."]
    # the target's address comes along, as CoreDNS sends it
    assert [str(rr.rdata) for rr in reply.ar] == ["10.96.0.20"]
    assert ask(index, "_http._udp.nginx.default.svc.cluster.local", "SRV"
               ).header.rcode == RCODE.NXDOMAIN


def test_srv_of_a_headless_service_names_each_endpoint(index: DnsIndex) -> None:
    reply = ask(index, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert rdata(reply, "SRV") == ["0 50 5432 10-42-0-8.db.default.svc.cluster.local.",
                                   "0 50 5432 db-0.db.default.svc.cluster.local."]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["10.42.0.7", "10.42.0.8"]


def test_external_name_is_a_cname(index: DnsIndex) -> None:
    for qtype in ("A", "AAAA", "CNAME"):
        reply = ask(index, "ext.other.svc.cluster.local", qtype)
        assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == \
            [("CNAME", "example.org.")]


def test_ptr_for_cluster_ips_and_pod_ips(index: DnsIndex) -> None:
    assert rdata(ask(index, "20.0.96.10.in-addr.arpa", "PTR")) == \
        ["nginx.default.svc.cluster.local."]
    assert rdata(ask(index, "7.0.42.10.in-addr.arpa", "PTR")) == \
        ["db-0.db.default.svc.cluster.local."]
    assert rdata(ask(index, "5.0.42.10.in-addr.arpa", "PTR")) == \
        ["10-42-0-5.nginx.default.svc.cluster.local."]
    # an address the cluster does not know is not ours: forwarded
    assert ask(index, "1.1.168.192.in-addr.arpa", "PTR") is None


def test_pod_names_answer_their_address(index: DnsIndex) -> None:
    assert rdata(ask(index, "10-42-3-4.default.pod.cluster.local")) == ["10.42.3.4"]
    assert rdata(ask(index, "fd00--1.default.pod.cluster.local", "AAAA")) == ["fd00::1"]
    assert ask(index, "nonsense.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_names_outside_the_zone_are_not_ours(index: DnsIndex) -> None:
    assert ask(index, "example.org") is None
    assert ask(index, "cluster.local.example.org") is None


def test_changes_replace_a_services_names(index: DnsIndex) -> None:
    before = index.generation
    index.update_service("default/nginx", service("nginx", "10.96.0.30"), [])
    assert rdata(ask(index, "nginx.default.svc.cluster.local")) == ["10.96.0.30"]
    assert ask(index, "20.0.96.10.in-addr.arpa", "PTR") is None
    assert ask(index, "10-42-0-5.nginx.default.svc.cluster.local").header.rcode == \
        RCODE.NXDOMAIN
    index.update_service("default/nginx", None, [])
    assert ask(index, "nginx.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert index.generation == before + 2
    index.update_service("default/db", None, [])
    # the namespace has no Service left: its name is gone with them
    assert ask(index, "default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_a_pod_ip_behind_two_services_has_two_ptrs() -> None:
    idx = DnsIndex()
    for name in ("a", "b"):
        idx.update_service(f"default/{name}", service(name, "None"),
                           [endpoint_slice(name, [ep("10.42.0.5")])])
    assert rdata(ask(idx, "5.0.42.10.in-addr.arpa", "PTR")) == \
        ["10-42-0-5.a.default.svc.cluster.local.", "10-42-0-5.b.default.svc.cluster.local."]
    idx.update_service("default/a", None, [])
    assert rdata(ask(idx, "5.0.42.10.in-addr.arpa", "PTR")) == \
        ["10-42-0-5.b.default.svc.cluster.local."]


def test_edns_queries_get_an_opt_record(index: DnsIndex) -> None:
    q = DNSRecord.question("nginx.default.svc.cluster.local")
    q.add_ar(EDNS0(udp_len=4096))
    reply = DNSRecord.parse(index.answer(q).pack())
    assert [QTYPE[rr.rtype] for rr in reply.ar] == ["OPT"]


def test_service_records_is_pure_and_dual_stack() -> None:
    svc = service("web", "10.96.0.9")
    svc["spec"]["clusterIPs"] = ["10.96.0.9", "fd00::9"]
    out = service_records(svc, [])
    rec = out.names["web.default.svc.cluster.local"]
    assert (rec.a, rec.aaaa) == (["10.96.0.9"], ["fd00::9"])
    assert set(out.ptrs) == {"10.96.0.9", "fd00::9"}
    assert svc["spec"]["clusterIPs"] == ["10.96.0.9", "fd00::9"]


def test_upstreams_come_from_resolv_conf(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.org\nnameserver 10.0.0.2\n"
                    "nameserver fe80::1%eth0\nnameserver bogus\nnameserver 10.42.0.1\n"
                    "nameserver 10.0.0.2\noptions ndots:2\n")
    assert upstreams_from_resolv_conf(conf, exclude=("10.42.0.1",)) == \
        (("10.0.0.2", 53), ("fe80::1", 53))
    assert upstreams_from_resolv_conf(tmp_path / "missing") == ()


def test_ipv6_cluster_ips_have_aaaa_and_ip6_arpa_ptr() -> None:
    svc = service("web", "fd00::9")
    idx = DnsIndex()
    idx.update_service("default/web", svc, [])
    assert rdata(ask(idx, "web.default.svc.cluster.local", "AAAA")) == ["fd00::9"]
    assert ask(idx, "web.default.svc.cluster.local", "A").rr == []
    nibbles = ".".join(reversed("fd00" + "0" * 27 + "9"))
    assert rdata(ask(idx, f"{nibbles}.ip6.arpa", "PTR")) == ["web.default.svc.cluster.local."]
