"""Pod networking for the node agent: a netns per sandbox wired by CNI (see `cni`), and
hostPorts published by DNAT in an nftables table of the data dir (see `hostport`)."""

from pinnace.agent.network.cni import NetworkError, PodNetwork, bridge_name, dir_hash
from pinnace.agent.network.hostport import HostPortMapping, HostPorts
from pinnace.agent.network.routes import NodeRoutes, remove_routes

__all__ = ["HostPortMapping", "HostPorts", "NetworkError", "NodeRoutes", "PodNetwork",
           "bridge_name", "dir_hash", "remove_routes"]
