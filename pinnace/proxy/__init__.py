"""Services on every node: the nftables data path (`rules`: what each Service puts in the
table, as pure functions of Services and EndpointSlices; `table`: the written state and the
transactions that change it; `proxier`: the component that keeps it written) and the cluster
DNS (`dns_records`: the names, kept in memory; `dns_server`: the component that answers them,
forwarding the rest as `dns_forward` does)."""

from pinnace.proxy.dns_server import DnsServer, DnsSettings
from pinnace.proxy.proxier import Proxier, ProxyError, ProxySettings, remove_table, table_name
from pinnace.proxy.rules import service_ports, service_rules
from pinnace.proxy.table import ServiceTable

__all__ = ["DnsServer", "DnsSettings", "Proxier", "ProxyError", "ProxySettings", "ServiceTable",
           "remove_table", "service_ports", "service_rules", "table_name"]
