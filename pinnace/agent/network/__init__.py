"""Pod networking for the node agent: a netns per sandbox wired by CNI (see `cni`)."""

from pinnace.agent.network.cni import NetworkError, PodNetwork, dir_hash

__all__ = ["NetworkError", "PodNetwork", "dir_hash"]
