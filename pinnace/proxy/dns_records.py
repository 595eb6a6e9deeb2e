"""Cluster DNS records: the names CoreDNS' kubernetes plugin serves for `cluster.local`
(kubernetes/dns `docs/specification.md`), kept in memory and answered without scanning.

What exists (zone `cluster.local`, every record TTL 5 s):
- `<svc>.<ns>.svc.<zone>`: A/AAAA of the ClusterIPs; for a headless Service one A/AAAA per
  ready endpoint (none ready: the name does not exist, NXDOMAIN); for an ExternalName
  Service a CNAME to `spec.externalName`.
- `<ep>.<svc>.<ns>.svc.<zone>` for every ready endpoint: `<ep>` is its `hostname` (pods
  with hostname + subdomain, what StatefulSets rely on) or else its address with dashes
  (CoreDNS' name for endpoints without one).
- SRV `_<port>._<proto>.<svc>.<ns>.svc.<zone>` for each named port (ClusterIP: one record
  to the Service's name and port; headless: one per ready endpoint, to the endpoint's name
  and target port), and on `<svc>.<ns>.svc.<zone>` itself one per port; the targets'
  A/AAAA go in the additional section, as CoreDNS does.
- PTR `<reversed ip>.in-addr.arpa` (and ip6.arpa) for ClusterIPs (to the Service's name)
  and for endpoint addresses, i.e. pod IPs (to the endpoint's name).
- `<a-b-c-d>.<ns>.pod.<zone>`: A a.b.c.d, for any address (CoreDNS' `pods insecure`).
- Empty non-terminals (the apex, `svc.<zone>`, `pod.<zone>`, `<ns>.svc.<zone>` of a
  namespace with Services): NOERROR with no data. The apex has SOA and NS.
A known name without the asked type: NOERROR, no data, SOA in the authority section; an
unknown name in the zone: NXDOMAIN with SOA. Names outside the zone, and reverse names of
addresses the cluster does not know, are not ours: `answer` returns None and the server
forwards them (CoreDNS' `fallthrough in-addr.arpa ip6.arpa` + `forward . /etc/resolv.conf`).

Design: `DnsIndex` keeps, per Service (`namespace/name`), the owner names and PTRs it
contributes, computed by the pure `service_records` from the Service and its
EndpointSlices whenever one of them changes, and merged into one dict owner name →
`NameRecords` and one dict address → PTR targets. A query is one dict lookup (plus the
pod-name and non-terminal rules); a change costs the size of that one Service. The wire
format is dnslib's; this module only maps Kubernetes objects to records.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, EDNS0, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

from pinnace.api.types import Obj

ZONE = "cluster.local"
TTL = 5
EDNS_PAYLOAD = 1232  # the UDP size we announce (DNS flag day 2020's figure)

__all__ = ["TTL", "ZONE", "DnsIndex", "NameRecords", "ServiceRecords", "service_records"]


@dataclass
class NameRecords:
    """What one owner name holds. `srv` entries: (port, target name)."""
    a: list[str] = field(default_factory=list)
    aaaa: list[str] = field(default_factory=list)
    cname: str = ""
    srv: list[tuple[int, str]] = field(default_factory=list)

    def add_ip(self, ip: str) -> None:
        target = self.aaaa if ":" in ip else self.a
        if ip not in target:
            target.append(ip)


@dataclass
class ServiceRecords:
    """The records one Service contributes: owner name → records, address → PTR targets."""
    names: dict[str, NameRecords] = field(default_factory=dict)
    ptrs: dict[str, list[str]] = field(default_factory=dict)


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _ready(endpoint: Obj) -> bool:
    # EndpointSlice semantics: an unset `ready` means ready
    return (endpoint.get("conditions") or {}).get("ready") is not False


def service_records(service: Obj, slices: list[Obj], zone: str = ZONE) -> ServiceRecords:
    """The names of one Service and its EndpointSlices (a pure function)."""
    meta, spec = service["metadata"], service.get("spec") or {}
    fqdn = f"{meta['name']}.{meta['namespace']}.svc.{zone}".lower()
    out = ServiceRecords()
    names = out.names

    def name(n: str) -> NameRecords:
        return names.setdefault(n.lower(), NameRecords())

    if spec.get("type") == "ExternalName":
        if spec.get("externalName"):
            name(fqdn).cname = spec["externalName"].rstrip(".").lower()
        return out
    cluster_ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
                   if ip and ip != "None"]
    headless = not cluster_ips
    if not headless:
        for ip in cluster_ips:
            name(fqdn).add_ip(ip)
            out.ptrs.setdefault(ip, []).append(fqdn)
        for sp in spec.get("ports") or []:
            proto = (sp.get("protocol") or "TCP").lower()
            entry = (int(sp["port"]), fqdn)
            name(fqdn).srv.append(entry)
            if sp.get("name"):
                name(f"_{sp['name']}._{proto}.{fqdn}").srv.append(entry)
    for s in sorted(slices, key=lambda s: s["metadata"]["name"]):
        ports = s.get("ports") or []
        for ep in s.get("endpoints") or []:
            if not _ready(ep):
                continue
            for ip in ep.get("addresses") or []:
                ep_name = f"{ep.get('hostname') or _dashed(ip)}.{fqdn}".lower()
                name(ep_name).add_ip(ip)
                targets = out.ptrs.setdefault(ip, [])
                if ep_name not in targets:
                    targets.append(ep_name)
                if not headless:
                    continue
                name(fqdn).add_ip(ip)
                for p in ports:
                    if p.get("port") is None:
                        continue
                    entry = (int(p["port"]), ep_name)
                    name(fqdn).srv.append(entry)
                    if p.get("name"):
                        proto = (p.get("protocol") or "TCP").lower()
                        name(f"_{p['name']}._{proto}.{fqdn}").srv.append(entry)
    return out


def _reverse_ip(labels: list[str]) -> str | None:
    """The address of a reverse name's labels (before in-addr.arpa / ip6.arpa), or None."""
    try:
        if len(labels) == 4 and all(label.isdigit() for label in labels):
            return str(ipaddress.IPv4Address(".".join(reversed(labels))))
        if len(labels) == 32:
            nibbles = "".join(reversed(labels))
            return str(ipaddress.IPv6Address(":".join(nibbles[i:i + 4]
                                                      for i in range(0, 32, 4))))
    except ValueError:
        pass
    return None


def _pod_ip(label: str) -> str | None:
    """`10-42-0-5` → 10.42.0.5 (IPv6: dashes for colons), or None."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


class DnsIndex:
    """The zone's names, kept current by `update_service` (call it whenever a Service or
    one of its EndpointSlices changed). `generation` grows with every change, for caches
    of encoded answers."""

    def __init__(self, zone: str = ZONE) -> None:
        self.zone = zone.rstrip(".").lower()
        self._suffix = "." + self.zone
        self.names: dict[str, NameRecords] = {}
        self.ptrs: dict[str, dict[str, list[str]]] = {}  # ip → service key → targets
        self._by_service: dict[str, ServiceRecords] = {}
        self._namespaces: dict[str, int] = {}  # namespace → Services with names
        self.generation = 0
        self.serial = int(time.time())
        self._soa_rr: RR | None = None  # built once per serial

    # -- updates -------------------------------------------------------------------------

    def update_service(self, key: str, service: Obj | None, slices: list[Obj]) -> None:
        """Replace what Service `key` (`namespace/name`) contributes; `service` None: it is
        gone."""
        old = self._by_service.pop(key, None)
        ns = key.split("/", 1)[0]
        if old is not None:
            for n in old.names:
                self.names.pop(n, None)
            for ip in old.ptrs:
                owners = self.ptrs.get(ip)
                if owners is not None:
                    owners.pop(key, None)
                    if not owners:
                        del self.ptrs[ip]
            self._namespaces[ns] -= 1
            if not self._namespaces[ns]:
                del self._namespaces[ns]
        if service is not None:
            new = service_records(service, slices, self.zone)
            self._by_service[key] = new
            self.names.update(new.names)
            for ip, targets in new.ptrs.items():
                self.ptrs.setdefault(ip, {})[key] = targets
            self._namespaces[ns] = self._namespaces.get(ns, 0) + 1
        self.generation += 1
        self.serial = max(self.serial + 1, int(time.time()))
        self._soa_rr = None

    # -- queries -------------------------------------------------------------------------

    def in_zone(self, qname: str) -> bool:
        return qname == self.zone or qname.endswith(self._suffix)

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        """The response to `request`, or None when the name is not ours to answer."""
        q = request.q
        # the labels joined, not str(): dnslib's str() escapes each label, a cost per query
        qname = b".".join(q.qname.label).decode(errors="replace").lower()
        if qname.endswith(".in-addr.arpa") or qname.endswith(".ip6.arpa"):
            return self._reverse(request, qname)
        if not self.in_zone(qname):
            return None
        reply = self._reply(request)
        found = self._lookup(qname)
        if found is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return reply
        owner, qtype = q.qname, q.qtype
        if found.cname:
            reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(found.cname), ttl=TTL))
        elif qtype in (QTYPE.A, QTYPE.ANY) and found.a:
            for ip in found.a:
                reply.add_answer(RR(owner, QTYPE.A, rdata=A(ip), ttl=TTL))
        if not found.cname and qtype in (QTYPE.AAAA, QTYPE.ANY):
            for ip in found.aaaa:
                reply.add_answer(RR(owner, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL))
        if not found.cname and qtype in (QTYPE.SRV, QTYPE.ANY) and found.srv:
            weight = max(1, 100 // len(found.srv))
            extra: list[str] = []
            for port, target in found.srv:
                reply.add_answer(RR(owner, QTYPE.SRV, ttl=TTL,
                                    rdata=SRV(0, weight, port, target + ".")))
                if target not in extra:
                    extra.append(target)
            for target in extra:
                rec = self.names.get(target)
                for ip in (rec.a + rec.aaaa) if rec else []:
                    reply.add_ar(RR(target + ".", QTYPE.AAAA if ":" in ip else QTYPE.A,
                                    rdata=AAAA(ip) if ":" in ip else A(ip), ttl=TTL))
        if qname == self.zone and qtype in (QTYPE.SOA, QTYPE.NS, QTYPE.ANY):
            if qtype != QTYPE.NS:
                reply.add_answer(self._soa())
            if qtype != QTYPE.SOA:
                reply.add_answer(RR(owner, QTYPE.NS, rdata=NS(f"ns.dns.{self.zone}."),
                                    ttl=TTL))
        if not reply.rr:
            reply.add_auth(self._soa())  # NOERROR, no data
        return reply

    def _lookup(self, qname: str) -> NameRecords | None:
        found = self.names.get(qname)
        if found is not None:
            return found
        rest = qname[: -len(self._suffix)] if qname != self.zone else ""
        labels = rest.split(".") if rest else []
        if not labels or labels in (["svc"], ["pod"]):
            return NameRecords()  # the apex and its two empty non-terminals
        if len(labels) == 2 and labels[1] in ("svc", "pod") and \
                labels[0] in self._namespaces:
            return NameRecords()
        if len(labels) == 3 and labels[2] == "pod":
            ip = _pod_ip(labels[0])
            if ip is not None:
                rec = NameRecords()
                rec.add_ip(ip)
                return rec
        return None

    def _reverse(self, request: DNSRecord, qname: str) -> DNSRecord | None:
        ip = _reverse_ip(qname.rsplit(".", 2)[0].split("."))
        owners = self.ptrs.get(ip) if ip is not None else None
        if not owners:
            return None
        reply = self._reply(request)
        if request.q.qtype in (QTYPE.PTR, QTYPE.ANY):
            for targets in owners.values():
                for target in targets:
                    reply.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR(target + "."),
                                        ttl=TTL))
        else:
            reply.add_auth(self._soa())
        return reply

    def _reply(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()  # same id and question, QR AA RA set, RD copied
        reply.ar = []
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
        return reply

    def _soa(self) -> RR:
        if self._soa_rr is None:
            z = self.zone + "."
            self._soa_rr = RR(z, QTYPE.SOA, ttl=TTL, rdata=SOA(
                f"ns.dns.{z}", f"hostmaster.{z}", (self.serial, 7200, 1800, 86400, TTL)))
        return self._soa_rr
