"""The Service data path as nftables rules: a pure function of Services and EndpointSlices.

kube-proxy's nftables design (KEP-3866), simplified for one node and IPv4: one table,
`table ip <name>`, written whole by one `nft -f` transaction (create-if-absent, delete,
define — so writing the same state twice changes nothing and no half-written table is ever
seen). The shape, for one Service port with endpoints:

    map service-ips        clusterIP . proto . port  : goto svc-<h>
    map service-nodeports  proto . nodePort          : goto ext-<h>
    chain nat-prerouting   (nat, dstnat)   jump services
    chain nat-output       (nat, -100)     jump services    (the host's own connections)
    chain services         ip daddr . meta l4proto . th dport vmap @service-ips
                           fib daddr type local meta l4proto . th dport vmap @service-nodeports
    chain ext-<h>          jump mark-for-masquerade; goto svc-<h>   (NodePort: replies must
                                                              come back through this node)
    chain svc-<h>          ip daddr <clusterIP> ip saddr != <pod CIDR> jump mark-for-masquerade
                           numgen random mod N vmap { 0 : goto ep-<h>, … }
    chain ep-<h>           ip saddr <ep> jump mark-for-masquerade    (hairpin)
                           meta l4proto tcp dnat to <ep>:<port>
    chain nat-postrouting  (nat, srcnat)   meta mark & 0x4000 → clear it, masquerade

NodePorts answer on every local address (`fib daddr type local`), 127.0.0.1 included:
unlike kube-proxy (CVE-2020-8558), because on a laptop that is the address users want. The
proxier turns `route_localnet` on for this node's bridge alone, and `filter-input` carries
kube-proxy's guard: nothing from the bridge to 127.0.0.0/8 that was not DNATed by us.

A Service port without usable endpoints is not in the NAT maps; its addresses are in
`no-endpoint-services` / `no-endpoint-nodeports` instead, checked on `ct state new` in the
filter hooks (input, forward, and output at -110, before the NAT output hook rewrites the
address), which reject at once — TCP reset, ICMP port unreachable otherwise — rather than
let the connection time out. Reject is not allowed in prerouting on older kernels, which is
why the check is not there.

Endpoints: the ready ones; when none is ready, the serving-and-terminating ones (so a
rolling update's last pod keeps answering). ExternalName and headless Services (no
ClusterIP) get no rules. Chain names are short and stable: a hash of namespace/name/port
(and the endpoint), so a change of one Service never renames another's chains.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pinnace.api.types import Obj

MASQUERADE_MARK = 0x4000
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service as the data path sees it."""
    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP | UDP | SCTP
    cluster_ips: tuple[str, ...]
    port: int
    node_port: int  # 0: none
    endpoints: tuple[Endpoint, ...]  # the ones to balance over (already chosen)
    affinity_timeout: int = 0  # sessionAffinity ClientIP: seconds a client sticks; 0 none

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.port_name}/{self.protocol}"


def chain_hash(text: str) -> str:
    """Ten base32 characters of sha256: short, stable, and safe in an nft chain name."""
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:10].lower()


def _ipv4(addr: Any) -> str | None:
    try:
        ip = ipaddress.ip_address(str(addr))
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


def _slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str
                     ) -> tuple[list[Endpoint], list[Endpoint]]:
    """(ready, serving-and-terminating) endpoints of a Service port, over its slices; an
    address is counted once however many slices name it."""
    ready: dict[Endpoint, None] = {}
    fallback: dict[Endpoint, None] = {}
    for es in slices:
        if es.get("addressType", "IPv4") != "IPv4":
            continue
        target = None
        for p in es.get("ports") or []:
            if (p.get("name") or "") == port_name and \
                    (p.get("protocol") or "TCP") == protocol and p.get("port"):
                target = int(p["port"])
                break
        if target is None:
            continue
        for ep in es.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            # as Kubernetes reads them: ready unset = ready; serving unset = ready's value
            is_ready = cond.get("ready") is not False
            serving = cond.get("serving")
            is_serving = is_ready if serving is None else serving is True
            terminating = cond.get("terminating") is True
            for addr in (ep.get("addresses") or [])[:1]:
                ip = _ipv4(addr)
                if ip is None:
                    continue
                if is_ready and not terminating:
                    ready[Endpoint(ip, target)] = None
                elif is_serving and terminating:
                    fallback[Endpoint(ip, target)] = None
    return list(ready), list(fallback)


def service_ports(services: Iterable[Obj], slices: Iterable[Obj]) -> list[ServicePort]:
    """Every Service port that gets rules, with the endpoints it balances over, in a stable
    order (namespace, name, port)."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for es in slices:
        md = es.get("metadata") or {}
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            by_service.setdefault((md.get("namespace") or "", svc), []).append(es)
    out: list[ServicePort] = []
    for svc in services:
        md, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        ips = [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]
        cluster_ips = tuple(dict.fromkeys(ip for a in ips if a and (ip := _ipv4(a))))
        if not cluster_ips:  # headless ("None") or not allocated
            continue
        ns, name = md.get("namespace") or "", md.get("name") or ""
        affinity = _affinity_timeout(spec)
        for p in spec.get("ports") or []:
            protocol = (p.get("protocol") or "TCP").upper()
            if protocol not in PROTOCOLS or not p.get("port"):
                continue
            port_name = p.get("name") or ""
            ready, fallback = _slice_endpoints(by_service.get((ns, name), []),
                                               port_name, protocol)
            out.append(ServicePort(ns, name, port_name, protocol, cluster_ips,
                                   int(p["port"]), int(p.get("nodePort") or 0),
                                   tuple(ready or fallback), affinity))
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port, sp.protocol))
    return out


def _affinity_timeout(spec: Obj) -> int:
    """Seconds a client stays with its endpoint under sessionAffinity ClientIP (Kubernetes'
    default 10800, 3 h); 0 without affinity."""
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    try:
        return max(int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT), 1)
    except (TypeError, ValueError):
        return DEFAULT_AFFINITY_TIMEOUT


def _elements(items: list[str]) -> str:
    return f"    elements = {{ {', '.join(items)} }}\n" if items else ""


def ruleset(table: str, *, services: Iterable[Obj], slices: Iterable[Obj],
            pod_cidr: str, bridge: str) -> str:
    """The `nft -f` text that replaces `table` with the data path of `services` and their
    EndpointSlices. `pod_cidr`: traffic to a ClusterIP from outside it is masqueraded;
    `bridge`: this node's pod bridge (the route_localnet guard)."""
    pod_cidr = str(ipaddress.ip_network(pod_cidr))
    service_ips: list[str] = []
    nodeports: list[str] = []
    no_endpoint_ips: list[str] = []
    no_endpoint_nodeports: list[str] = []
    chains: list[str] = []
    sets: list[str] = []
    for sp in service_ports(services, slices):
        h = chain_hash(sp.key)
        proto = sp.protocol.lower()
        if not sp.endpoints:
            no_endpoint_ips += [f"{ip} . {proto} . {sp.port} : goto reject-chain"
                                for ip in sp.cluster_ips]
            if sp.node_port:
                no_endpoint_nodeports.append(f"{proto} . {sp.node_port} : goto reject-chain")
            continue
        service_ips += [f"{ip} . {proto} . {sp.port} : goto svc-{h}" for ip in sp.cluster_ips]
        rules = [f"ip daddr {ip} {proto} dport {sp.port} ip saddr != {pod_cidr} "
                 f"jump mark-for-masquerade" for ip in sp.cluster_ips]
        targets = []
        for i, ep in enumerate(sp.endpoints):
            eh = chain_hash(f"{sp.key}/{ep.ip}:{ep.port}")
            targets.append(f"{i} : goto ep-{eh}")
            remember = []
            if sp.affinity_timeout:
                # kube-proxy's ClientIP affinity: one timeout set per endpoint; a client
                # seen there goes back to it before any random choice
                sets.append(f"  set affinity-{eh} {{\n    type ipv4_addr\n"
                            f"    flags dynamic,timeout\n"
                            f"    timeout {sp.affinity_timeout}s\n  }}\n")
                rules.append(f"ip saddr @affinity-{eh} goto ep-{eh}")
                remember = [f"update @affinity-{eh} {{ ip saddr }}"]
            chains.append(_chain(f"ep-{eh}", [
                f"ip saddr {ep.ip} jump mark-for-masquerade", *remember,
                f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}"], comment=sp.key))
        rules.append(f"numgen random mod {len(sp.endpoints)} vmap {{ {', '.join(targets)} }}")
        chains.append(_chain(f"svc-{h}", rules, comment=sp.key))
        if sp.node_port:
            nodeports.append(f"{proto} . {sp.node_port} : goto ext-{h}")
            chains.append(_chain(f"ext-{h}", ["jump mark-for-masquerade", f"goto svc-{h}"],
                                 comment=sp.key))
    head = f"table ip {table}\ndelete table ip {table}\n"
    return head + f"""table ip {table} {{
  map service-ips {{
    type ipv4_addr . inet_proto . inet_service : verdict
{_elements(service_ips)}  }}
  map service-nodeports {{
    type inet_proto . inet_service : verdict
{_elements(nodeports)}  }}
  map no-endpoint-services {{
    type ipv4_addr . inet_proto . inet_service : verdict
{_elements(no_endpoint_ips)}  }}
  map no-endpoint-nodeports {{
    type inet_proto . inet_service : verdict
{_elements(no_endpoint_nodeports)}  }}
  chain filter-input {{
    type filter hook input priority -110; policy accept;
    iifname "{bridge}" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop
    ct state new jump service-endpoints-check
    ct state new jump nodeport-endpoints-check
  }}
  chain filter-forward {{
    type filter hook forward priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
  chain filter-output {{
    type filter hook output priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
  chain service-endpoints-check {{
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
  }}
  chain nodeport-endpoints-check {{
    fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
  }}
  chain reject-chain {{
    meta l4proto tcp reject with tcp reset
    reject
  }}
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }}
  chain nat-output {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
  chain nat-postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    jump masquerading
  }}
  chain masquerading {{
    meta mark & {MASQUERADE_MARK:#x} == 0 return
    meta mark set meta mark ^ {MASQUERADE_MARK:#x}
    masquerade fully-random
  }}
  chain mark-for-masquerade {{
    meta mark set meta mark | {MASQUERADE_MARK:#x}
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
    fib daddr type local meta l4proto . th dport vmap @service-nodeports
  }}
{"".join(sets)}{"".join(chains)}}}
"""


def _chain(name: str, rules: list[str], *, comment: str) -> str:
    body = "".join(f"    {r}\n" for r in rules)
    return f"  chain {name} {{\n    comment \"{comment}\"\n{body}  }}\n"


def delete_ruleset(table: str) -> str:
    """The `nft -f` text that removes `table` (and succeeds when there is none)."""
    return f"table ip {table}\ndelete table ip {table}\n"
