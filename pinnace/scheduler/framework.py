"""The scheduling framework: what a plugin sees and what it answers.

Shaped like Kubernetes' `pkg/scheduler/framework`:

- `PodInfo` is a pod with everything plugins ask of it computed once per cycle
  (requests, host ports, tolerations, affinity), the way PreFilter does.
- `NodeInfo` is a node with the pods on it and their summed requests, used host
  ports and per-owner pod counts; the snapshot keeps it current incrementally.
- `FilterPlugin.filter(pod, node_info) -> Status`: SUCCESS, UNSCHEDULABLE (another
  pod leaving could help: preemption might), UNSCHEDULABLE_AND_UNRESOLVABLE (no
  eviction helps), or ERROR (something broke; retry, don't blame the pod).
- `ScorePlugin.score(pod, node_info) -> int` in 0..100, optionally with
  `normalize(pod, scores)` over all feasible nodes (ScoreExtensions; `scores` maps each
  node, by name or position, to its score). A scorer may add `score_nodes(pod, nodes)
  -> list[int]`, the same scores for many nodes in one call: the cycle uses it, since
  a Python call per node is a large part of scoring hundreds of nodes.
- A filter that only ever rejects tainted or cordoned nodes says so with
  `passes_plain_nodes = True`, and the node loop does not call it for the others.
- Both may define `applies(pod) -> bool` (PreFilter's Skip): a plugin with nothing
  to check for this pod is left out of the per-node loop, which is the hot path.
  A scorer may also define `pre_score(pod, feasible) -> bool` (PreScore's Skip): False
  when it would give every feasible node the same score, which cannot change the
  choice (TaintToleration when no feasible node has a taint).
- A filter plugin may also take part in the rest of Kubernetes' cycle (VolumeBinding
  does): `pre_filter(pod, nodes) -> Status` once per cycle before the node loop (a
  failure rejects every node with its message), `reserve(pod, node)` once a node is
  chosen, `async pre_bind(pod, node)` before the binding is written (raising fails the
  binding) and `unreserve(pod, node)` when it fails.
- A plugin that reads the cluster beyond nodes and pods declares `uses_handle = True`
  and is built with a `Handle`: the client, the shared informer factory, and
  `cluster_changed` to call when an event may make waiting pods fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property, lru_cache
from typing import Any, Protocol, runtime_checkable

from pinnace.api.quantity import int_value, milli_value
from pinnace.api.scheduling import required_node_selector_terms
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory

# Requests assumed for scoring when a container states none (Kubernetes' non-zero
# defaults), so that pods without requests still spread by load.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"


class Code(Enum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE, reasons)

    @classmethod
    def unresolvable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)

    @classmethod
    def error(cls, reason: str) -> Status:
        return cls(Code.ERROR, (reason,))


SUCCESS = Status()


def resource_amount(name: str, quantity: Any) -> int:
    """CPU in millicores, everything else in whole units (bytes, counts)."""
    return _amount(name, str(quantity))


@lru_cache(maxsize=4096)
def _amount(name: str, quantity: str) -> int:
    # exact (Fraction) parsing costs tens of microseconds, and every pod of a workload
    # asks for the same few quantities ("100m", "128Mi")
    return milli_value(quantity) if name == CPU else int_value(quantity)


def _container_requests(container: Obj) -> dict[str, int]:
    res = container.get("resources") or {}
    # Limits stand in for missing requests (the API server defaults them the same way).
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    return {name: resource_amount(name, q) for name, q in merged.items()}


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def pod_requests(pod: Obj, *, non_zero: bool = False) -> dict[str, int]:
    """What the pod asks of a node: the containers' sum, or the largest init container
    (plus the sidecars started before it) if bigger, plus the pod overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        req = _container_requests(c)
        if non_zero:
            req.setdefault(CPU, DEFAULT_MILLI_CPU)
            req.setdefault(MEMORY, DEFAULT_MEMORY)
        _add(total, req)
    sidecars: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        req = _container_requests(c)
        if c.get("restartPolicy") == "Always":  # a sidecar keeps running beside the app
            _add(sidecars, req)
            _add(total, req)
            continue
        peak = dict(sidecars)
        _add(peak, req)
        for k, v in peak.items():
            total[k] = max(total.get(k, 0), v)
    for name, q in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, 0) + resource_amount(name, q)
    return total


HostPort = tuple[str, str, int]  # (hostIP, protocol, port)


def host_ports(pod: Obj) -> list[HostPort]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                            int(p["hostPort"])))
    return out


def controller_uid(pod: Obj) -> str:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid") or f"{ref.get('kind')}/{ref.get('name')}"
    return ""


@dataclass
class PodInfo:
    """A pod and what plugins need of it, computed once."""

    obj: Obj
    key: str
    requests: dict[str, int]
    non_zero_requests: dict[str, int]
    host_ports: list[HostPort]
    owner: str
    tolerations: list[Obj]
    node_selector: dict[str, str]
    required_terms: list[Obj] | None
    preferred_terms: list[Obj]
    priority: int

    @classmethod
    def of(cls, pod: Obj) -> PodInfo:
        m = pod["metadata"]
        spec = pod.get("spec") or {}
        node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        return cls(
            obj=pod, key=f"{m.get('namespace')}/{m['name']}",
            requests=pod_requests(pod), non_zero_requests=pod_requests(pod, non_zero=True),
            host_ports=host_ports(pod), owner=controller_uid(pod),
            tolerations=list(spec.get("tolerations") or []),
            node_selector=dict(spec.get("nodeSelector") or {}),
            required_terms=required_node_selector_terms(spec),
            preferred_terms=list(
                node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []),
            priority=int(spec.get("priority") or 0))

    @cached_property
    def fit_requests(self) -> tuple[tuple[str, int], ...]:
        """The requests NodeResourcesFit compares with what a node has left (positive,
        not `pods`): sifted once per pod, not on every node."""
        return tuple((k, v) for k, v in self.requests.items() if v > 0 and k != PODS)

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.obj["metadata"].get("namespace") or ""


@dataclass
class NodeInfo:
    """A node and the pods bound (or assumed) to it, with their sums kept current."""

    name: str
    node: Obj | None = None  # None: pods are known on it before the node itself
    allocatable: dict[str, int] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    non_zero_requested: dict[str, int] = field(default_factory=dict)
    pods: dict[str, PodInfo] = field(default_factory=dict)
    used_ports: Counter[HostPort] = field(default_factory=Counter)
    owner_counts: Counter[str] = field(default_factory=Counter)
    # Read from the node once per node event: filters read them for every pod.
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    unschedulable: bool = False
    plain: bool = False  # no taints and not cordoned: most nodes, skipped by those filters
    # Worked out on every change of the node or its pods, read for every pod's cycle:
    # what is left of each resource (allocatable - requested), room for more pods, and
    # (cpu allocatable, cpu requested, memory allocatable, memory requested) counting
    # Kubernetes' non-zero defaults, which LeastAllocated scores.
    free: dict[str, int] = field(default_factory=dict)
    pod_room: int = 0
    load: tuple[int, int, int, int] = (0, 0, 0, 0)
    _allocatable_raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def _sums_changed(self) -> None:
        alloc, used, nz = self.allocatable, self.requested, self.non_zero_requested
        self.free = {k: alloc.get(k, 0) - used.get(k, 0) for k in {*alloc, *used}}
        self.pod_room = alloc.get(PODS, 0) - len(self.pods)
        self.load = (alloc.get(CPU, 0), nz.get(CPU, 0), alloc.get(MEMORY, 0), nz.get(MEMORY, 0))

    def set_node(self, node: Obj | None) -> None:
        self.node = node
        n = node or {}
        alloc = (n.get("status") or {}).get("allocatable") or {}
        if alloc != self._allocatable_raw:  # heartbeats repeat it: parse only changes
            self.allocatable = {k: resource_amount(k, v) for k, v in alloc.items()}
            self._allocatable_raw = alloc
            self._sums_changed()
        self.labels = (n.get("metadata") or {}).get("labels") or {}
        self.taints = (n.get("spec") or {}).get("taints") or []
        self.unschedulable = bool((n.get("spec") or {}).get("unschedulable"))
        self.plain = not self.taints and not self.unschedulable

    def add_pod(self, pod: PodInfo) -> None:
        if pod.key in self.pods:
            self.remove_pod(pod.key)
        self.pods[pod.key] = pod
        _add(self.requested, pod.requests)
        _add(self.non_zero_requested, pod.non_zero_requests)
        self.used_ports.update(pod.host_ports)
        if pod.owner:
            self.owner_counts[pod.owner] += 1
        self._sums_changed()

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        for k, v in pod.requests.items():
            self.requested[k] -= v
        for k, v in pod.non_zero_requests.items():
            self.non_zero_requested[k] -= v
        self.used_ports.subtract(pod.host_ports)
        self.used_ports += Counter()  # drop zero counts
        if pod.owner:
            self.owner_counts[pod.owner] -= 1
            if not self.owner_counts[pod.owner]:
                del self.owner_counts[pod.owner]
        self._sums_changed()
        return pod


@dataclass
class Handle:
    """What plugins that read more of the cluster are built with (Kubernetes' Handle)."""

    client: Client
    factory: InformerFactory
    cluster_changed: Callable[[], None]


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int: ...


def applies(plugin: object, pod: PodInfo) -> bool:
    """Whether the plugin has anything to say about this pod (PreFilter/PreScore Skip)."""
    check = getattr(plugin, "applies", None)
    return True if check is None else bool(check(pod))


def pre_score(plugin: object, pod: PodInfo, feasible: list[NodeInfo]) -> bool:
    """Whether the plugin's scores could tell these feasible nodes apart (PreScore Skip)."""
    check = getattr(plugin, "pre_score", None)
    return True if check is None else bool(check(pod, feasible))


def normalize(plugin: object, pod: PodInfo, scores: dict[str, int]) -> None:
    """Run the plugin's NormalizeScore over {node name: score}, in place, if it has one."""
    fn = getattr(plugin, "normalize", None)
    if fn is not None:
        fn(pod, scores)


def normalize_to_max(scores: dict[str, int], *, reverse: bool = False) -> None:
    """Scale scores so the highest is 100 (Kubernetes' DefaultNormalizeScore)."""
    top = max(scores.values(), default=0)
    for name, s in scores.items():
        v = 100 * s // top if top else 0
        scores[name] = (100 - v) if reverse else v
