"""Each pod's resolv.conf from dnsPolicy and dnsConfig, as the kubelet computes it."""

from __future__ import annotations

from typing import Any

from pinnace.agent.pod_dns import ClusterDNS, parse_resolv_conf, pod_dns_config
from pinnace.agent.runtime import DNSConfig

CLUSTER = ClusterDNS(("10.42.7.1",), "cluster.local")
HOST = parse_resolv_conf("# the host's\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
                         "search corp.example. lab.example\noptions rotate timeout:2\n")


def pod(ns: str = "team", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_host_resolv_conf_is_parsed_as_the_resolver_reads_it() -> None:
    assert HOST == DNSConfig(("192.0.2.53", "192.0.2.54"), ("corp.example", "lab.example"),
                             ("rotate", "timeout:2"))
    # the last search line wins
    assert parse_resolv_conf("search a\nsearch b c\n").searches == ("b", "c")


def test_cluster_first_is_the_default() -> None:
    config, warnings = pod_dns_config(pod(), CLUSTER, HOST)
    assert warnings == []
    assert config.resolv_conf() == (
        "nameserver 10.42.7.1\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example "
        "lab.example\n"
        "options ndots:5\n")


def test_host_network_pods_get_the_hosts_unless_they_ask_for_the_cluster() -> None:
    assert pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirst"), CLUSTER, HOST
                          ) == (HOST, [])
    config, _ = pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
                               CLUSTER, HOST)
    assert config.servers == ("10.42.7.1",) and config.options == ("ndots:5",)
    # ClusterFirstWithHostNet without hostNetwork is ClusterFirst
    assert pod_dns_config(pod(dnsPolicy="ClusterFirstWithHostNet"), CLUSTER, HOST) == \
        pod_dns_config(pod(), CLUSTER, HOST)


def test_default_is_the_hosts() -> None:
    assert pod_dns_config(pod(dnsPolicy="Default"), CLUSTER, HOST) == (HOST, [])


def test_none_is_the_dns_config_alone() -> None:
    config, _ = pod_dns_config(pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}), CLUSTER, HOST)
    assert config.resolv_conf() == ("nameserver 1.2.3.4\n"
                                    "search ns1.svc.cluster-domain.example\n"
                                    "options ndots:2 edns0\n")


def test_dns_config_is_merged_into_the_policys() -> None:
    config, _ = pod_dns_config(pod(dnsConfig={
        "nameservers": ["10.42.7.1", "1.2.3.4"], "searches": ["svc.cluster.local", "extra."],
        "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}]}),
        CLUSTER, HOST)
    assert config.servers == ("10.42.7.1", "1.2.3.4")  # duplicates dropped
    assert config.searches == ("team.svc.cluster.local", "svc.cluster.local",
                               "cluster.local", "corp.example", "lab.example", "extra")
    assert config.options == ("ndots:1", "single-request-reopen")  # the pod's ndots wins


def test_a_node_without_cluster_dns_falls_back_to_the_hosts_with_an_event() -> None:
    config, warnings = pod_dns_config(pod(), ClusterDNS(), HOST)
    assert config == HOST
    assert [reason for reason, _ in warnings] == ["MissingClusterDNS"]
    assert 'Falling back to "Default" policy' in warnings[0][1]


def test_limits_drop_what_the_resolver_cannot_take_with_an_event() -> None:
    config, warnings = pod_dns_config(pod(dnsConfig={
        "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"],
        "searches": [f"d{i}.example" for i in range(40)]}), CLUSTER, HOST)
    assert config.servers == ("10.42.7.1", "1.1.1.1", "2.2.2.2")
    assert len(config.searches) == 32
    assert [reason for reason, _ in warnings] == ["DNSConfigForming", "DNSConfigForming"]
    assert warnings[0][1].endswith("the applied nameserver line is: 10.42.7.1 1.1.1.1 "
                                   "2.2.2.2")
    long_names = [("x" * 250) + f".d{i}" for i in range(10)]
    config, _ = pod_dns_config(pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.1.1.1"], "searches": long_names}), CLUSTER, HOST)
    assert len(" ".join(config.searches)) <= 2048 and len(config.searches) == 8
