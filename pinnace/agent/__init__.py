"""The node agent (kubelet): node registration and Lease heartbeat, one worker per pod,
pod status; `runtime/` holds the container runtimes, `fake_nodes` simulated nodes."""

from pinnace.agent.fake_nodes import FakeNodes
from pinnace.agent.node import NodeAgent
from pinnace.agent.pod_status import Observed, compute_pod_status
from pinnace.agent.pod_worker import NodeContext, PodWorker, PodWorkers

__all__ = ["FakeNodes", "NodeAgent", "NodeContext", "Observed", "PodWorker", "PodWorkers",
           "compute_pod_status"]
