"""The scheduler: pick a node for each unscheduled pod and bind it.

    scheduler = Scheduler(client, factory)     # registers its informers on the factory
    await factory.start(); await scheduler.run()

One scheduling cycle at a time, binding in parallel (Kubernetes' split):

1. `queue.pop()` gives the next pod (priority, then age; see queue.py).
2. PreFilters (plugins with `pre_filter`) may reject the pod for every node at once;
   then filters run over the nodes, starting where the previous cycle stopped, until
   enough feasible nodes are found (percentageOfNodesToScore: all nodes below 100,
   else 50% minus 1% per 125 nodes, at least 5% and 100 nodes).
3. Scores rank the feasible nodes: sum of weight x (normalized) plugin score; ties
   are broken at random.
4. The pod is assumed on the chosen node at once (the next cycle sees it) and plugins
   reserve what they chose for it (VolumeBinding: volumes); a task runs the PreBind
   steps (VolumeBinding writes the volume decisions and waits for the claims to be
   bound) and POSTs `pods/<name>/binding`; up to `parallel_binds` are in flight. A
   failed binding unreserves, forgets the assumption and retries the pod after
   backoff.

A pod no node fits gets the PodScheduled=False/Unschedulable condition and a
FailedScheduling Warning event worded as Kubernetes words it, and waits in the
queue for a cluster event (node added or changed, pod deleted, and — through the
plugins' handle — claims, volumes and classes changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, islice

from pinnace.api.errors import ApiError
from pinnace.api.timestamps import now_rfc3339
from pinnace.client.client import Client
from pinnace.client.events import recorder_for
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.scheduler.framework import (
    SUCCESS,
    Code,
    Handle,
    NodeInfo,
    Obj,
    PodInfo,
    Status,
    applies,
    normalize,
    pre_score,
)
from pinnace.scheduler.plugins import DEFAULT_FILTERS, DEFAULT_SCORES, build
from pinnace.scheduler.queue import QueuedPod, SchedulingQueue
from pinnace.scheduler.snapshot import TERMINAL_PHASES, ClusterSnapshot

log = logging.getLogger(__name__)

MIN_FEASIBLE_NODES = 100
NO_NODES = "no nodes available to schedule pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class SchedulerStats:
    attempts: int = 0
    bound: int = 0
    unschedulable: int = 0
    errors: int = 0
    first_bind: float = 0.0  # event loop time
    last_bind: float = 0.0


@dataclass
class ScheduleResult:
    node: str | None
    message: str = ""  # why no node fits (the FitError text)
    error: bool = False  # a plugin failed: retry, don't call the pod unschedulable


def fit_error_message(pod: PodInfo, num_nodes: int, statuses: dict[str, Status]) -> str:
    """`0/N nodes are available: <count reason, ...>. preemption: ...` (Kubernetes 1.32)."""
    if num_nodes == 0:
        return NO_NODES
    histogram: Counter[str] = Counter()
    for status in statuses.values():
        histogram.update(status.reasons)
    reasons = sorted(f"{n} {r}" for r, n in histogram.items())
    message = f"0/{num_nodes} nodes are available: {', '.join(reasons)}."
    if (pod.obj.get("spec") or {}).get("preemptionPolicy") == "Never":
        return f"{message} preemption: not eligible due to preemptionPolicy=Never."
    # We do not preempt yet: every node reports as DefaultPreemption does when no lower
    # priority pod could make room (or when eviction cannot help at all).
    post: Counter[str] = Counter(
        PREEMPTION_NOT_HELPFUL if s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE else NO_VICTIMS
        for s in statuses.values())
    post_reasons = sorted(f"{n} {r}" for r, n in post.items())
    return f"{message} preemption: 0/{num_nodes} nodes are available: " \
           f"{', '.join(post_reasons)}."


def pre_filter_error_message(pod: PodInfo, num_nodes: int, status: Status) -> str:
    """A PreFilter rejection: its message for all nodes, and no preemption can help
    (Kubernetes 1.32's FitError with a PreFilterMsg)."""
    message = f"0/{num_nodes} nodes are available: {status.message}."
    if (pod.obj.get("spec") or {}).get("preemptionPolicy") == "Never":
        return f"{message} preemption: not eligible due to preemptionPolicy=Never."
    return f"{message} preemption: 0/{num_nodes} nodes are available: {num_nodes} " \
           f"{PREEMPTION_NOT_HELPFUL}."


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough to score (percentageOfNodesToScore)."""
    if num_nodes < MIN_FEASIBLE_NODES or percentage >= 100:
        return num_nodes
    pct = percentage or max(50 - num_nodes // 125, 5)
    return max(num_nodes * pct // 100, MIN_FEASIBLE_NODES)


def _node_changed(old: Obj, new: Obj) -> bool:
    """Changes that can make a pod fit (not heartbeats): Kubernetes' NodeUpdate hints."""
    return old.get("spec") != new.get("spec") or \
        (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels") \
        or (old.get("status") or {}).get("allocatable") != \
        (new.get("status") or {}).get("allocatable")


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *,
                 scheduler_name: str = "default-scheduler",
                 filters: tuple[str, ...] = DEFAULT_FILTERS,
                 scores: dict[str, int] | None = None,
                 percentage_of_nodes_to_score: int = 0,
                 parallel_binds: int = 64) -> None:
        self.client = client
        self.factory = factory
        self.scheduler_name = scheduler_name
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self.pods_rt = client.resource("v1", "Pod")
        self.snapshot = ClusterSnapshot()
        self.queue = SchedulingQueue()
        handle = Handle(client, factory, cluster_changed=self.queue.move_all_to_active)
        self.filters = [build(name, handle) for name in filters]
        self.scorers = [(build(name, handle), weight)
                        for name, weight in (DEFAULT_SCORES if scores is None else scores).items()]
        self.events = recorder_for(client)
        self.stats = SchedulerStats()
        self._parallel_binds = parallel_binds
        self._binds: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_start = 0
        self.pods = factory.informer("v1", "Pod")
        self.nodes = factory.informer("v1", "Node")
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)

    # -- what we watch ---------------------------------------------------------------------

    def responsible_for(self, pod: Obj) -> bool:
        """Unscheduled, ours, alive."""
        spec = pod.get("spec") or {}
        return not spec.get("nodeName") and \
            (spec.get("schedulerName") or "default-scheduler") == self.scheduler_name and \
            not pod["metadata"].get("deletionTimestamp") and \
            (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES

    def _on_pod_add(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.snapshot.set_pod(pod)
        elif self.responsible_for(pod):
            self.queue.add(key_of(pod), pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        key = key_of(new)
        if (new.get("spec") or {}).get("nodeName"):
            self.queue.delete(key)
            was_counted = self.snapshot.node_of(key) is not None
            self.snapshot.set_pod(new)
            if was_counted and self.snapshot.node_of(key) is None:
                self.queue.move_all_to_active()  # it finished: its resources are free
        elif self.responsible_for(new):
            self.queue.add(key, new)
        else:
            self.queue.delete(key)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = key_of(pod)
        self.queue.delete(key)
        if self.snapshot.node_of(key) is not None:
            self.snapshot.remove_pod(key)
            self.queue.move_all_to_active()

    def _on_node_add(self, node: Obj) -> None:
        self.snapshot.set_node(node)
        self.queue.move_all_to_active()

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        self.snapshot.set_node(new)
        if _node_changed(old, new):
            self.queue.move_all_to_active()

    def _on_node_delete(self, node: Obj) -> None:
        self.snapshot.remove_node(node["metadata"]["name"])

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        await self.factory.wait_synced()
        self._binds = asyncio.Semaphore(self._parallel_binds)
        log.info("scheduler %s started", self.scheduler_name)
        try:
            while True:
                qp = await self.queue.pop()
                await self._binds.acquire()
                binding = False
                try:
                    binding = self.schedule_one(qp)
                except Exception:
                    log.exception("scheduling %s failed", qp.key)
                    self.queue.requeue_error(qp)
                finally:
                    if not binding:
                        self._binds.release()
                # Let informer events and binding answers in between cycles.
                await asyncio.sleep(0)
        finally:
            for t in list(self._tasks):
                t.cancel()
            for t in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.events.close()

    def schedule_one(self, qp: QueuedPod) -> bool:
        """One scheduling cycle (synchronous: the snapshot cannot change under it).
        True if a binding task was started; it then owns the caller's bind slot."""
        pod = self.pods.get(qp.key)
        if pod is None or not self.responsible_for(pod) or self.snapshot.is_assumed(qp.key):
            self.queue.done(qp.key)
            return False
        self.stats.attempts += 1
        info = PodInfo.of(pod)
        result = self.find_node(info)
        if result.node is None:
            self._event(pod, "Warning", "FailedScheduling", result.message)
            if result.error:
                self.stats.errors += 1
                self.queue.requeue_error(qp)
            else:
                self.stats.unschedulable += 1
                self.queue.requeue_unschedulable(qp)
                self._spawn(self._set_unschedulable(pod, result.message))
            return False
        self.snapshot.assume(info, result.node)
        node_info = self.snapshot.nodes[result.node]
        for plugin in self.filters:
            if hasattr(plugin, "reserve") and applies(plugin, info):
                plugin.reserve(info, node_info)
        self._spawn(self._bind(qp, info, result.node))
        return True

    def find_node(self, pod: PodInfo) -> ScheduleResult:
        nodes = self.snapshot.node_list()
        n = len(nodes)
        if n == 0:
            return ScheduleResult(None, NO_NODES)
        filters = [f for f in self.filters if applies(f, pod)]
        for plugin in filters:
            pre_filter = getattr(plugin, "pre_filter", None)
            if pre_filter is not None:
                status = pre_filter(pod, nodes)
                if status.code is Code.ERROR:
                    return ScheduleResult(None, status.message, error=True)
                if not status.ok:
                    return ScheduleResult(None, pre_filter_error_message(pod, n, status))
        wanted = num_feasible_nodes_to_find(n, self.percentage_of_nodes_to_score)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self._next_start % n
        processed = 0
        checks = [plugin.filter for plugin in filters]  # type: ignore[attr-defined]
        plain_checks = [plugin.filter for plugin in filters  # type: ignore[attr-defined]
                        if not getattr(plugin, "passes_plain_nodes", False)]
        # from the start index round to just before it (kube-scheduler's nextStartNodeIndex)
        for processed, node_info in enumerate(  # noqa: B007 (read after the loop)
                chain(islice(nodes, start, None), islice(nodes, start)), 1):
            for check in plain_checks if node_info.plain else checks:
                status = check(pod, node_info)
                if status is not SUCCESS and not status.ok:
                    if status.code is Code.ERROR:
                        return ScheduleResult(None, status.message, error=True)
                    statuses[node_info.name] = status
                    break
            else:
                feasible.append(node_info)
                if len(feasible) >= wanted:
                    break
        self._next_start = (start + processed) % n
        if not feasible:
            return ScheduleResult(None, fit_error_message(pod, n, statuses))
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name)
        return ScheduleResult(self.select_host(pod, feasible))

    def select_host(self, pod: PodInfo, feasible: list[NodeInfo]) -> str:
        totals = [0] * len(feasible)  # by position in feasible
        for plugin, weight in self.scorers:
            if not applies(plugin, pod) or not pre_score(plugin, pod, feasible):
                continue
            score_nodes = getattr(plugin, "score_nodes", None)
            values: list[int] | Iterable[int] = score_nodes(pod, feasible) if score_nodes \
                else [plugin.score(pod, ni) for ni in feasible]  # type: ignore[attr-defined]
            if hasattr(plugin, "normalize"):
                scores = dict(enumerate(values))
                normalize(plugin, pod, scores)
                values = scores.values()  # in feasible's order still
            totals = [t + v * weight for t, v in zip(totals, values, strict=True)]
        best = max(totals)
        return random.choice([ni.name for ni, total in zip(feasible, totals, strict=True)
                              if total == best])

    # -- writes ----------------------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, qp: QueuedPod, pod: PodInfo, node: str) -> None:
        assert self._binds is not None
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace,
                             "uid": pod.obj["metadata"].get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            for plugin in self.filters:
                if hasattr(plugin, "pre_bind") and applies(plugin, pod):
                    await plugin.pre_bind(pod, node)
            await self.client.post_subresource(self.pods_rt, pod.name, "binding", body,
                                               pod.namespace)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.stats.errors += 1
            for plugin in self.filters:
                if hasattr(plugin, "unreserve"):
                    plugin.unreserve(pod, node)
            self.snapshot.forget(pod.key)
            self.queue.move_all_to_active()  # what we had assumed is free again
            self.queue.requeue_error(qp)
            if not (isinstance(e, ApiError) and e.code in (404, 409)):
                self._event(pod.obj, "Warning", "FailedScheduling", f"Binding rejected: {e}")
            log.debug("binding %s to %s failed: %s", pod.key, node, e)
        else:
            self.queue.done(pod.key)
            now = asyncio.get_running_loop().time()
            self.stats.bound += 1
            self.stats.first_bind = self.stats.first_bind or now
            self.stats.last_bind = now
            self._event(pod.obj, "Normal", "Scheduled",
                        f"Successfully assigned {pod.namespace}/{pod.name} to {node}")
        finally:
            self._binds.release()

    def _event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        """Queue an Event about pod: never awaited, so writing it cannot delay a cycle."""
        # the pod as an involvedObject, whether or not the cached copy names its kind
        self.events.record({**pod, "apiVersion": "v1", "kind": "Pod"},
                           component=self.scheduler_name, type_=type_, reason=reason,
                           message=message, reporting_instance=self.scheduler_name)

    async def _set_unschedulable(self, pod: Obj, message: str) -> None:
        """PodScheduled=False/Unschedulable, written only when it changes."""
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), {})
        if current.get("status") == "False" and current.get("reason") == "Unschedulable" \
                and current.get("message") == message:
            return
        transition = current.get("lastTransitionTime") if current.get("status") == "False" \
            else None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message, "lastProbeTime": None,
                     "lastTransitionTime": transition or now_rfc3339()}
        m = pod["metadata"]
        try:
            await self.client.patch(self.pods_rt, m["name"], {"status": {"conditions": [
                condition]}}, namespace=m.get("namespace"), patch_type="strategic",
                subresource="status")
        except ApiError as e:
            log.debug("PodScheduled condition of %s not written: %s", m["name"], e)
