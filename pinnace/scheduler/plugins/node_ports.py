"""NodePorts: two pods cannot hold the same host port and protocol on one node, unless
both bind distinct specific host IPs (0.0.0.0 conflicts with every IP)."""

from __future__ import annotations

from pinnace.scheduler.framework import SUCCESS, NodeInfo, PodInfo, Status

REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"


class NodePorts:
    name = "NodePorts"

    def applies(self, pod: PodInfo) -> bool:
        return bool(pod.host_ports)

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        used = node_info.used_ports
        if not used:
            return SUCCESS
        for ip, protocol, port in pod.host_ports:
            for uip, uproto, uport in used:
                if uport == port and uproto == protocol and (ip == uip or ANY_IP in (ip, uip)):
                    return Status.unschedulable(REASON)
        return SUCCESS
