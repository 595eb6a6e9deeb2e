"""Services on every node: the nftables data path (`rules`: the table as a pure function of
Services and EndpointSlices; `proxier`: the component that keeps it written)."""

from pinnace.proxy.proxier import Proxier, ProxyError, ProxySettings, remove_table, table_name
from pinnace.proxy.rules import ruleset, service_ports

__all__ = ["Proxier", "ProxyError", "ProxySettings", "remove_table", "ruleset",
           "service_ports", "table_name"]
