"""Each pod's resolver configuration, as the kubelet computes it (its `dns` package), from
the pod's `dnsPolicy` and `dnsConfig`, the node's cluster DNS and the host's resolv.conf.

- ClusterFirst (the default) and ClusterFirstWithHostNet: `nameserver <cluster DNS>`,
  `search <ns>.svc.<domain> svc.<domain> <domain>` followed by the host's search domains,
  `options ndots:5` (the host's options are not kept). A hostNetwork pod with
  ClusterFirst gets the host's configuration instead (Kubernetes' rule: it shares the
  host's network, so it gets the host's resolver unless it asks with
  ClusterFirstWithHostNet). A node without cluster DNS falls back to the host's, with a
  `MissingClusterDNS` Event.
- Default: the host's resolv.conf (its nameservers, search domains and options).
- None: nothing but the pod's `dnsConfig`.
Then `dnsConfig` is merged in: its nameservers and searches appended (duplicates dropped),
its options replacing those of the same name. What exceeds the resolver's limits (3
nameservers, 32 search domains, 2048 characters of search line) is dropped with a
`DNSConfigForming` Event, as the kubelet does.

Pure functions; the caller reads the host's resolv.conf and records the Events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pinnace.agent.runtime.interface import DNSConfig
from pinnace.api.types import Obj

__all__ = ["MAX_NAMESERVERS", "MAX_SEARCHES", "MAX_SEARCH_CHARS", "ClusterDNS",
           "parse_resolv_conf", "pod_dns_config", "read_host_dns"]

MAX_NAMESERVERS = 3  # glibc's MAXNS
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
DEFAULT_OPTIONS = ("ndots:5",)

Warning_ = tuple[str, str]  # (reason, message) of a Warning Event


@dataclass(frozen=True)
class ClusterDNS:
    """The kubelet's --cluster-dns and --cluster-domain."""
    servers: tuple[str, ...] = ()  # () : this node has no cluster DNS
    domain: str = "cluster.local"


def parse_resolv_conf(text: str) -> DNSConfig:
    """A resolv.conf's nameservers, search domains (the last `search` line, as the
    resolver reads it; trailing dots dropped) and options."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = [s.rstrip(".") for s in fields[1:] if s.rstrip(".")]
        elif fields[0] == "options":
            options += fields[1:]
    return DNSConfig(tuple(servers), tuple(searches), tuple(options))


def read_host_dns(path: str | Path = "/etc/resolv.conf") -> DNSConfig:
    try:
        return parse_resolv_conf(Path(path).read_text())
    except OSError:
        return DNSConfig()


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(base: tuple[str, ...], extra: list[Obj]) -> tuple[str, ...]:
    """The pod's options replace the base's of the same name (`ndots:5` + ndots 2 →
    `ndots:2`); new names are appended."""
    merged: dict[str, str] = {}
    for opt in base:
        name, _, _ = opt.partition(":")
        merged[name] = opt
    for opt in extra:
        name = str(opt.get("name") or "")
        if not name:
            continue
        value = opt.get("value")
        merged[name] = f"{name}:{value}" if value is not None else name
    return tuple(merged.values())


def _fit(config: DNSConfig) -> tuple[DNSConfig, list[Warning_]]:
    warnings: list[Warning_] = []
    servers, searches = config.servers, config.searches
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append(("DNSConfigForming", "Nameserver limits were exceeded, some "
                         "nameservers have been omitted, the applied nameserver line is: "
                         + " ".join(servers)))
    fitted = list(searches[:MAX_SEARCHES])
    while fitted and len(" ".join(fitted)) > MAX_SEARCH_CHARS:
        fitted.pop()
    if len(fitted) < len(searches):
        warnings.append(("DNSConfigForming", "Search Line limits were exceeded, some search "
                         "paths have been omitted, the applied search line is: "
                         + " ".join(fitted)))
    return DNSConfig(servers, tuple(fitted), config.options), warnings


def pod_dns_config(pod: Obj, cluster: ClusterDNS, host: DNSConfig
                   ) -> tuple[DNSConfig, list[Warning_]]:
    """The pod's DNSConfig, and the Warning Events (reason, message) computing it gave."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    warnings: list[Warning_] = []
    cluster_first = policy == "ClusterFirstWithHostNet" or \
        (policy == "ClusterFirst" and not host_network)
    if policy == "None":
        config = DNSConfig()
    elif cluster_first and cluster.servers:
        domain = cluster.domain.strip(".")
        ns = pod["metadata"].get("namespace") or "default"
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain] if domain else []
        config = DNSConfig(cluster.servers, _unique(searches + list(host.searches)),
                           DEFAULT_OPTIONS)
    else:
        if cluster_first:
            warnings.append(("MissingClusterDNS", "kubelet does not have ClusterDNS IP "
                             f"configured and cannot create Pod using \"{policy}\" policy. "
                             "Falling back to \"Default\" policy."))
        config = host
    extra = spec.get("dnsConfig")
    if extra:
        config = DNSConfig(
            _unique(list(config.servers) + [str(s) for s in extra.get("nameservers") or []]),
            _unique(list(config.searches) +
                    [str(s).rstrip(".") for s in extra.get("searches") or []
                     if str(s).rstrip(".")]),
            _merge_options(config.options, extra.get("options") or []))
    config, limits = _fit(config)
    return config, warnings + limits
