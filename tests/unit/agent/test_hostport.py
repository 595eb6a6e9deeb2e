"""The hostPort table's text and the host-network OCI spec, without touching the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace.agent.network import HostPortMapping, HostPorts, NetworkError
from pinnace.agent.network.hostport import ruleset
from pinnace.agent.runtime import oci_spec


def test_ruleset_dnats_each_mapping_in_creation_order() -> None:
    text = ruleset("pinnace-abc", "pnabc", "10.1.2.0/24", {
        "b": {"ip": "10.1.2.3", "seq": 2, "mappings": [
            {"container_port": 53, "host_port": 5353, "protocol": "UDP", "host_ip": ""}]},
        "a": {"ip": "10.1.2.2", "seq": 1, "mappings": [
            {"container_port": 80, "host_port": 8080, "protocol": "TCP",
             "host_ip": "127.0.0.1"}]},
    })
    assert text.startswith("table ip pinnace-abc\ndelete table ip pinnace-abc\n")
    first = text.index("ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.1.2.2:80")
    assert first < text.index("udp dport 5353 dnat to 10.1.2.3:53")
    assert "fib daddr type local jump hostports" in text
    assert 'oifname "pnabc" ct status dnat ip saddr { 127.0.0.0/8, 10.1.2.0/24 } masquerade' \
        in text


def test_ruleset_without_mappings_only_deletes_the_table() -> None:
    assert ruleset("pinnace-abc", "pnabc", "10.1.2.0/24", {}) == \
        "table ip pinnace-abc\ndelete table ip pinnace-abc\n"


async def test_bad_mappings_are_refused_and_ipv6_ones_skipped(tmp_path: Path) -> None:
    ports = HostPorts(tmp_path, bridge="pnx", pod_cidr="10.1.2.0/24", nft="/nonexistent/nft")
    with pytest.raises(NetworkError, match="protocol"):
        await ports.add("s", "10.1.2.2", [HostPortMapping(80, 8080, "ICMP")])
    with pytest.raises(NetworkError, match="hostIP"):
        await ports.add("s", "10.1.2.2", [HostPortMapping(80, 8080, "TCP", "not-an-ip")])
    await ports.add("s", "10.1.2.2", [HostPortMapping(80, 8080, "TCP", "::1")])  # no-op
    assert ports.mappings() == {}


def test_host_network_spec_joins_no_network_namespace() -> None:
    def spec(netns: str) -> dict:
        return oci_spec.build_spec(oci_spec.SpecInput(
            rootfs="/r", args=["sh"], env=[], cwd="/", uid=0, gid=0, hostname="h",
            netns_path=netns, cgroups_path="/pinnace/x"))
    assert {"type": "network", "path": "/run/netns/p"} in \
        spec("/run/netns/p")["linux"]["namespaces"]
    assert "network" not in {n["type"] for n in spec("")["linux"]["namespaces"]}
