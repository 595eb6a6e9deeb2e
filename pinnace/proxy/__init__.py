"""Services on every node: the nftables data path (`rules`: the table as a pure function of
Services and EndpointSlices; `proxier`: the component that keeps it written) and the
cluster DNS (`dns_records`: the names, kept in memory; `dns_server`: the component that
answers them, forwarding the rest as `dns_forward` does)."""

from pinnace.proxy.dns_server import DnsServer, DnsSettings
from pinnace.proxy.proxier import Proxier, ProxyError, ProxySettings, remove_table, table_name
from pinnace.proxy.rules import ruleset, service_ports

__all__ = ["DnsServer", "DnsSettings", "Proxier", "ProxyError", "ProxySettings",
           "remove_table", "ruleset", "service_ports", "table_name"]
