"""The Service data path as nftables rules: pure functions of Services and EndpointSlices.

kube-proxy's nftables design (KEP-3866), for one node and IPv4, in one table `table ip
<name>`. What a Service port turns into (`service_rules`, one `ServiceRules` per Service, so
that the table can be changed one Service at a time: see `table`):

    map service-ips        clusterIP . proto . port   : goto svc-<h>   (internal traffic)
                           externalIP/LB IP . proto . port : goto ext-<h>
    map service-nodeports  proto . nodePort           : goto ext-<h>
    set cluster-ips        every ClusterIP (a port it lacks is rejected: see below)
    chain svc-<h>          ip daddr <clusterIP>, not from a pod or this node: masquerade mark
                           [ip saddr @affinity-<e> … dnat to <e>]       (ClientIP affinity)
                           numgen random mod 3 == 0 … dnat to <e1>
                           numgen random mod 2 == 0 … dnat to <e2>
                           … dnat to <e3>
    chain loc-<h>          the same over this node's endpoints only (traffic policy Local)
    chain ext-<h>          Cluster: (not from this node) jump mark-for-masquerade; goto svc-<h>
                           Local:   pods and the node itself → svc-<h>; others → loc-<h>,
                                    not masqueraded (the client IP stays)

One difference from kube-proxy, measured: kube-proxy gives every endpoint a chain (hairpin
mark, affinity update, DNAT) and balances with one anonymous `numgen … vmap` per Service.
nft 1.0.6 reads every chain of the table before each transaction, and keeps anonymous sets in
that cache too: with 10,000 Services of 3 endpoints (40,000 chains) adding one element took
~100 ms, and writing the whole table ~20 s; with the endpoints inline in their Service's
chain (10,000 chains, no anonymous sets) 17-29 ms and 0.8 s (a quiet machine; 2-4 times
that with the 2 cores busy). So the endpoints are chosen
by a cascade of `numgen random mod k == 0` rules (1/3, then 1/2 of the rest, then the last:
uniform; iptables-mode kube-proxy's `statistic` cascade), and hairpin traffic (a pod reaching
itself through its Service) is recognised after DNAT by one set of `ep . ep` pairs, this
node's pods only (no other pod's traffic is DNATed here to itself; and nft reads set
elements too before each transaction: 30,000 of them cost ~35 ms).

Masquerade by mark (0x4000; nat postrouting masquerades marked packets `fully-random`):
ClusterIP traffic from neither the pod CIDR nor this node, external traffic (NodePorts,
externalIPs, LoadBalancer addresses) not from this node unless its policy is Local, hairpin
traffic, and whatever was DNATed from 127.0.0.0/8 (a pod cannot answer that address).
Unlike kube-proxy, the node's own connections (from a non-loopback address) keep their
source: the DNAT happened here, so the replies come here anyway, and SNAT to one address
leaves 64k source ports per pod and port, each held 120 s by conntrack's TIME_WAIT once
used. Measured with a connection per request from the node (bench/service.py): 0.07 of
the pod IP's rate masqueraded, ~1.0 not.

NodePorts answer on every local address (`fib daddr type local`), 127.0.0.1 included:
unlike kube-proxy (CVE-2020-8558), because on a laptop that is the address users want. So do
LoadBalancer addresses in 127.0.0.0/8 (the pool of a one-machine cluster). Both need
`route_localnet` on this node's bridge (`ServiceRules.route_localnet`), and the table carries
kube-proxy's guard: nothing from the bridge to 127.0.0.0/8 that was not DNATed by us.

Without usable endpoints an address is not in the NAT maps but in `no-endpoint-services` /
`no-endpoint-nodeports`, checked on `ct state new` in the filter hooks (input, forward, and
output at -110, before the NAT output hook rewrites the address): rejected at once — TCP
reset, ICMP port unreachable otherwise — when the Service has no endpoint at all, dropped when
its traffic policy is Local and this node has none (as kube-proxy). Reject is not allowed in
prerouting on older kernels, which is why the check is not there. A ClusterIP on a port its
Service lacks is rejected too: after DNAT (forward, and output at -90) whatever still goes to
a ClusterIP was not a Service port (kube-proxy's `cluster-ips` check).

Endpoints: the ready ones; when none is ready, the serving-and-terminating ones (so a
rolling update's last pod keeps answering); "local" ones are those whose `nodeName` is this
node's, chosen the same way among themselves. ExternalName and headless Services get no
rules. Names are short and stable: a hash of namespace/name/port (and, for an affinity set,
the endpoint and the timeout), so a change of one Service never renames another's chains.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pinnace.api.types import Obj

MASQUERADE_MARK = 0x4000
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

# the table's own maps and sets (name -> declaration); their elements come from Services
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS = "cluster-ips"
HAIRPIN = "hairpin"
BASE_SETS = {
    SERVICE_IPS: "map", SERVICE_NODEPORTS: "map", NO_ENDPOINT_SERVICES: "map",
    NO_ENDPOINT_NODEPORTS: "map", CLUSTER_IPS: "set", HAIRPIN: "set"}
_DECLARATIONS = {
    SERVICE_IPS: "type ipv4_addr . inet_proto . inet_service : verdict",
    SERVICE_NODEPORTS: "type inet_proto . inet_service : verdict",
    NO_ENDPOINT_SERVICES: "type ipv4_addr . inet_proto . inet_service : verdict",
    NO_ENDPOINT_NODEPORTS: "type inet_proto . inet_service : verdict",
    CLUSTER_IPS: "type ipv4_addr",
    HAIRPIN: "type ipv4_addr . ipv4_addr"}
BASE_CHAINS = (
    "filter-input", "filter-forward", "filter-output", "filter-output-post-dnat",
    "service-endpoints-check", "nodeport-endpoints-check", "cluster-ips-check",
    "reject-chain", "nat-prerouting", "nat-output", "nat-postrouting", "masquerading",
    "mark-for-masquerade", "services")


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
    external_ips: tuple[str, ...] = ()  # spec.externalIPs and LoadBalancer ingress IPs
    local_endpoints: tuple[Endpoint, ...] = ()  # those on this node (already chosen)
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.port_name}/{self.protocol}"


@dataclass
class ServiceRules:
    """What one Service puts in the table: its chains (name -> (comment, rules)), its
    affinity sets (name -> timeout in seconds) and its elements of the table's maps and
    sets (map -> key -> verdict; "" in sets)."""
    chains: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    route_localnet: bool = False  # answers on 127.0.0.0/8 (NodePort, LoadBalancer address)

    def add(self, table_set: str, key: str, value: str = "") -> None:
        self.elements.setdefault(table_set, {})[key] = value


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


def slice_service_key(es: Obj) -> str | None:
    """`namespace/service` of the Service an EndpointSlice belongs to (its label), or None."""
    md = es.get("metadata") or {}
    svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{md.get('namespace') or ''}/{svc}" if svc else None


def _slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str, node_name: str
                     ) -> tuple[list[Endpoint], list[Endpoint]]:
    """(all, local) endpoints to balance a Service port over: the ready ones, or when none
    is ready the serving-and-terminating ones (chosen separately for this node's); an
    address is counted once however many slices name it."""
    ready: dict[Endpoint, bool] = {}  # endpoint -> on this node
    fallback: dict[Endpoint, bool] = {}
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
            local = bool(node_name) and ep.get("nodeName") == node_name
            for addr in (ep.get("addresses") or [])[:1]:
                ip = _ipv4(addr)
                if ip is None:
                    continue
                if is_ready and not terminating:
                    ready[Endpoint(ip, target)] = local
                elif is_serving and terminating:
                    fallback[Endpoint(ip, target)] = local
    local = [e for e, here in ready.items() if here] or \
        [e for e, here in fallback.items() if here]
    return list(ready or fallback), local


def service_ports(services: Iterable[Obj], slices: Iterable[Obj], *, node_name: str = ""
                  ) -> list[ServicePort]:
    """Every Service port that gets rules, with the endpoints it balances over, in a stable
    order (namespace, name, port). `node_name`: whose endpoints are local."""
    by_service: dict[str, list[Obj]] = {}
    for es in slices:
        key = slice_service_key(es)
        if key:
            by_service.setdefault(key, []).append(es)
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
        external = _external_ips(svc)
        for p in spec.get("ports") or []:
            protocol = (p.get("protocol") or "TCP").upper()
            if protocol not in PROTOCOLS or not p.get("port"):
                continue
            port_name = p.get("name") or ""
            endpoints, local = _slice_endpoints(by_service.get(f"{ns}/{name}", []),
                                                port_name, protocol, node_name)
            out.append(ServicePort(
                ns, name, port_name, protocol, cluster_ips, int(p["port"]),
                int(p.get("nodePort") or 0), tuple(endpoints), affinity,
                external_ips=external, local_endpoints=tuple(local),
                external_local=spec.get("externalTrafficPolicy") == "Local",
                internal_local=spec.get("internalTrafficPolicy") == "Local"))
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port, sp.protocol))
    return out


def _external_ips(svc: Obj) -> tuple[str, ...]:
    """`spec.externalIPs`, and for a LoadBalancer `status.loadBalancer.ingress[].ip`: the
    addresses that answer like the ClusterIP, as external traffic."""
    spec = svc.get("spec") or {}
    addrs = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        addrs += [i.get("ip") for i in ingress if isinstance(i, dict) and i.get("ip")]
    return tuple(dict.fromkeys(ip for a in addrs if (ip := _ipv4(a))))


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


def _balance(sp: ServicePort, endpoints: tuple[Endpoint, ...], out: ServiceRules, *,
             pods: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The rules that DNAT to one of `endpoints`: the remembered one first (affinity), else
    a uniform random one."""
    proto = sp.protocol.lower()
    affinity = {ep: f"affinity-{chain_hash(f'{sp.key}/{ep.ip}:{ep.port}/{sp.affinity_timeout}')}"
                for ep in endpoints} if sp.affinity_timeout else {}
    for name in affinity.values():
        out.sets[name] = sp.affinity_timeout

    def dnat(ep: Endpoint) -> str:
        # kube-proxy's ClientIP affinity: one timeout set per endpoint, refreshed on
        # every new connection that goes there
        remember = f"update @{affinity[ep]} {{ ip saddr }} " if affinity else ""
        return f"meta l4proto {proto} {remember}dnat to {ep.ip}:{ep.port}"
    rules = [f"ip saddr @{affinity[ep]} {dnat(ep)}" for ep in endpoints if affinity]
    for i, ep in enumerate(endpoints):
        left = len(endpoints) - i
        rules.append(f"numgen random mod {left} == 0 {dnat(ep)}" if left > 1 else dnat(ep))
        if ipaddress.ip_address(ep.ip) in pods:  # only this node's pods can hairpin here
            out.add(HAIRPIN, f"{ep.ip} . {ep.ip}")
    return rules


def _port_rules(sp: ServicePort, pods: ipaddress.IPv4Network | ipaddress.IPv6Network,
                out: ServiceRules) -> None:
    pod_cidr = str(pods)
    h = chain_hash(sp.key)
    proto = sp.protocol.lower()
    # ClusterIP traffic from neither this node's pods nor this node itself is masqueraded,
    # so that the replies come back through here (see the module docstring)
    masq_outside = [f"ip daddr {ip} {proto} dport {sp.port} ip saddr != {pod_cidr} "
                    f"fib saddr type != local jump mark-for-masquerade"
                    for ip in sp.cluster_ips]
    has_local = bool(sp.local_endpoints)
    internal = has_local if sp.internal_local else bool(sp.endpoints)
    external = has_local if sp.external_local else bool(sp.endpoints)
    # no endpoint at all: reject at once; none on this node for a Local policy: drop
    no_endpoint = "goto reject-chain" if not sp.endpoints else "drop"
    if sp.endpoints:
        out.chains[f"svc-{h}"] = (sp.key, tuple(
            (masq_outside if not sp.internal_local else [])
            + _balance(sp, sp.endpoints, out, pods=pods)))
    if has_local and (sp.internal_local or sp.external_local):
        out.chains[f"loc-{h}"] = (sp.key, tuple(
            (masq_outside if sp.internal_local else [])
            + _balance(sp, sp.local_endpoints, out, pods=pods)))
    for ip in sp.cluster_ips:
        out.add(CLUSTER_IPS, ip)
        key = f"{ip} . {proto} . {sp.port}"
        if internal:
            out.add(SERVICE_IPS, key, f"goto {'loc' if sp.internal_local else 'svc'}-{h}")
        else:
            out.add(NO_ENDPOINT_SERVICES, key, no_endpoint)
    if not (sp.node_port or sp.external_ips):
        return
    for ip in sp.external_ips:
        key = f"{ip} . {proto} . {sp.port}"
        if external:
            out.add(SERVICE_IPS, key, f"goto ext-{h}")
        else:
            out.add(NO_ENDPOINT_SERVICES, key, no_endpoint)
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if external:
            out.add(SERVICE_NODEPORTS, key, f"goto ext-{h}")
        else:
            out.add(NO_ENDPOINT_NODEPORTS, key, no_endpoint)
    if not external:
        return
    out.route_localnet = out.route_localnet or bool(sp.node_port) or any(
        ipaddress.ip_address(ip) in LOOPBACK for ip in sp.external_ips)
    if sp.external_local:
        # as kube-proxy: pods get the cluster-wide behaviour; so does the node itself; only
        # traffic from elsewhere is held to this node's endpoints, and keeps its client
        # address
        out.chains[f"ext-{h}"] = (sp.key, (
            f"ip saddr {pod_cidr} goto svc-{h}",
            f"fib saddr type local goto svc-{h}",
            f"goto loc-{h}"))
    else:
        # masqueraded, so that the replies come back through this node, unless the node
        # itself is the client (see the module docstring)
        out.chains[f"ext-{h}"] = (sp.key, ("fib saddr type != local jump mark-for-masquerade",
                                           f"goto svc-{h}"))


def service_rules(service: Obj | None, slices: Iterable[Obj], *, pod_cidr: str,
                  node_name: str = "") -> ServiceRules:
    """What one Service (None: a deleted one, nothing) puts in the table, given its
    EndpointSlices. `pod_cidr`: traffic to a ClusterIP from outside it is masqueraded."""
    out = ServiceRules()
    if service is None:
        return out
    pods = ipaddress.ip_network(pod_cidr)
    for sp in service_ports([service], slices, node_name=node_name):
        _port_rules(sp, pods, out)
    return out


def base_table(table: str, *, bridge: str, more: str = "") -> str:
    """The table's fixed part (`table` block: maps and sets without elements, base chains
    with their rules), for a table whose chains are empty; `more` goes in the same block
    (one block is much faster for nft than many commands). `bridge`: this node's pod
    bridge (the route_localnet guard)."""
    decls = "".join(f"  {kind} {name} {{\n    {_DECLARATIONS[name]}\n  }}\n"
                    for name, kind in BASE_SETS.items())
    return f"""table ip {table} {{
{decls}  chain filter-input {{
    type filter hook input priority -110; policy accept;
    iifname "{bridge}" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop
    ct state new jump service-endpoints-check
    ct state new jump nodeport-endpoints-check
  }}
  chain filter-forward {{
    type filter hook forward priority -110; policy accept;
    ct state new jump service-endpoints-check
    ct state new jump cluster-ips-check
  }}
  chain filter-output {{
    type filter hook output priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
  chain filter-output-post-dnat {{
    type filter hook output priority -90; policy accept;
    ct state new jump cluster-ips-check
  }}
  chain service-endpoints-check {{
    ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}
  }}
  chain nodeport-endpoints-check {{
    fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}
  }}
  chain cluster-ips-check {{
    ip daddr @{CLUSTER_IPS} goto reject-chain
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
    ct status dnat ip saddr . ip daddr @{HAIRPIN} jump mark-for-masquerade
    ct status dnat ip saddr 127.0.0.0/8 jump mark-for-masquerade
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
    ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
    fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}
  }}
{more}}}
"""


def delete_ruleset(table: str) -> str:
    """The `nft -f` text that removes `table` (and succeeds when there is none)."""
    return f"table ip {table}\ndelete table ip {table}\n"
