"""DaemonSet controller: one pod per eligible node (Kubernetes 1.32 `pkg/controller/daemon`).

Watches DaemonSets, their pods (by controller ownerReference), Nodes and
ControllerRevisions; the key is the DaemonSet's `namespace/name`. A node change
queues every DaemonSet; a pod change queues its owner.

reconcile:
1. The revision: the template's ControllerRevision (`_history`, shared with the
   StatefulSet: `<ds>-<hash>`, owned by the DaemonSet, highest `revision` is
   current); new pods carry its hash in their `controller-revision-hash` label.
2. For each node: should a daemon pod run there (nodeName, nodeSelector,
   required node affinity, taints against the pod's tolerations plus the ones
   Kubernetes adds to daemon pods), and may an existing one keep running
   (untolerated NoExecute taints and lost affinity say no)? Create the missing
   pods (in slow-start batches), delete misscheduled, failed and duplicate ones.
   A created pod names its node through the node affinity term
   `metadata.name In [node]` (matchFields); the scheduler binds it. Pods on nodes
   that no longer exist are the pod garbage collector's.
3. RollingUpdate: old-revision pods are deleted — unavailable ones at once,
   available ones while fewer than maxUnavailable daemon pods are unavailable;
   step 2 then creates current ones. OnDelete: only pods deleted by someone
   else are replaced with the current revision.
4. Status, a pure function of nodes and pods, written when it changed.

Expectations keep a second reconcile from acting before the informer has seen
the previous one's creations and deletions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pinnace.api import errors
from pinnace.api.scheduling import pod_spec_fits_node, required_node_selector_terms, tolerates_all
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of, split_key
from pinnace.controllers import _history as history
from pinnace.controllers._expectations import Expectations
from pinnace.controllers._history import REVISION_HASH_LABEL
from pinnace.controllers._rollout import scaled_value
from pinnace.controllers.base import Controller, delete_expected, owner_key, selector_of
from pinnace.controllers.pod_template import (
    controller_uid,
    is_pod_available,
    is_pod_ready,
    pod_from_template,
)

TEMPLATE_GENERATION_LABEL = "pod-template-generation"
COMPONENT = "daemonset-controller"


# -- which nodes ------------------------------------------------------------------------

def daemon_tolerations(spec: Obj) -> list[Obj]:
    """The tolerations Kubernetes adds to every daemon pod (AddOrUpdateDaemonPodTolerations)."""
    added = [("node.kubernetes.io/not-ready", "NoExecute"),
             ("node.kubernetes.io/unreachable", "NoExecute"),
             ("node.kubernetes.io/disk-pressure", "NoSchedule"),
             ("node.kubernetes.io/memory-pressure", "NoSchedule"),
             ("node.kubernetes.io/pid-pressure", "NoSchedule"),
             ("node.kubernetes.io/unschedulable", "NoSchedule")]
    if spec.get("hostNetwork"):
        added.append(("node.kubernetes.io/network-unavailable", "NoSchedule"))
    out = [t for t in spec.get("tolerations") or []
           if (t.get("key"), t.get("effect")) not in set(added)]
    return out + [{"key": k, "operator": "Exists", "effect": e} for k, e in added]


def should_run(template_spec: Obj, node: Obj) -> tuple[bool, bool]:
    """(should the daemon pod be placed on node, may an existing one keep running there)."""
    if template_spec.get("nodeName") and template_spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not pod_spec_fits_node(template_spec, node):
        return False, False
    tolerations = daemon_tolerations(template_spec)
    taints = (node.get("spec") or {}).get("taints") or []
    # PreferNoSchedule never forbids; only an untolerated NoExecute taint evicts
    return (tolerates_all(tolerations, taints, ("NoSchedule", "NoExecute")),
            tolerates_all(tolerations, taints, ("NoExecute",)))


# -- pods -------------------------------------------------------------------------------

def _with_node_affinity(spec: Obj, node_name: str) -> None:
    """Replace the required node affinity with `metadata.name In [node]`: the node already
    satisfied the original terms, and the scheduler now places the pod on that node."""
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}


def _pod_from_template(ds: Obj, node_name: str, revision_hash: str) -> Obj:
    """A daemon pod for node_name: the template's pod, labelled with the revision, aimed
    at the node and carrying the daemon tolerations."""
    pod = pod_from_template(ds["spec"].get("template") or {}, owner=ds, extra_labels={
        REVISION_HASH_LABEL: revision_hash,
        TEMPLATE_GENERATION_LABEL: str(ds["metadata"].get("generation", 1))})
    pod["metadata"].pop("finalizers", None)  # the template's are not carried over (as before)
    _with_node_affinity(pod["spec"], node_name)
    pod["spec"]["tolerations"] = daemon_tolerations(pod["spec"])
    return pod


def node_of_pod(pod: Obj) -> str:
    """The pod's node: spec.nodeName once bound, else the node its affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    for term in required_node_selector_terms(spec) or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and \
                    len(f.get("values") or []) == 1:
                return f["values"][0]
    return ""


def _by_age(pods: list[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                       p["metadata"]["name"]))


# -- status -----------------------------------------------------------------------------

@dataclass
class NodePlacement:
    node: str
    should_run: bool
    keep_running: bool
    pods: list[Obj] = field(default_factory=list)  # not terminating, oldest first
    node_gone: bool = False  # pods aimed at a deleted node: removed, not counted


def calculate_status(ds: Obj, placements: list[NodePlacement], revision_hash: str,
                     now: datetime) -> Obj:
    """DaemonSetStatus from what was observed (Kubernetes' updateDaemonSetStatus)."""
    min_ready = int(ds["spec"].get("minReadySeconds") or 0)
    desired = current = misscheduled = ready = available = updated = 0
    for p in placements:
        if p.should_run:
            desired += 1
            if p.pods:
                current += 1
                pod = p.pods[0]
                if is_pod_ready(pod):
                    ready += 1
                    if is_pod_available(pod, min_ready, now):
                        available += 1
                if (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) == \
                        revision_hash:
                    updated += 1
        elif p.pods and not p.node_gone:
            misscheduled += 1
    status = dict(ds.get("status") or {})
    status.update({"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                   "numberMisscheduled": misscheduled, "numberReady": ready,
                   "numberAvailable": available, "updatedNumberScheduled": updated,
                   "observedGeneration": ds["metadata"].get("generation", 1)})
    if desired - available > 0:
        status["numberUnavailable"] = desired - available
    else:
        status.pop("numberUnavailable", None)
    return status


# -- the controller ---------------------------------------------------------------------

class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.ds_rt = client.resource("apps/v1", "DaemonSet")
        self.pod_rt = client.resource("v1", "Pod")
        self.cr_rt = client.resource("apps/v1", "ControllerRevision")
        self.daemonsets = self.watch("apps/v1", "DaemonSet", on_delete=self._on_ds_deleted)
        self.pods = factory.informer("v1", "Pod")
        self.nodes = factory.informer("v1", "Node")
        self.revisions = factory.informer("apps/v1", "ControllerRevision")
        self.expectations = Expectations()
        self.pods.add_index("daemonset-owner", _owner_uid)
        self.revisions.add_index("daemonset-owner", _owner_uid)
        self.pods.add_handler(on_add=self._on_pod_added, on_update=self._on_pod_updated,
                              on_delete=self._on_pod_deleted)
        self.nodes.add_handler(on_add=self._on_node, on_update=self._on_node_updated,
                               on_delete=self._on_node)

    # -- events -------------------------------------------------------------------------

    def _on_ds_deleted(self, ds: Obj) -> None:
        self.expectations.forget(key_of(ds))

    def _on_pod_added(self, pod: Obj) -> None:
        key = owner_key(pod, "DaemonSet")
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _on_pod_updated(self, _old: Obj, pod: Obj) -> None:
        key = owner_key(pod, "DaemonSet")
        if key:
            self.queue.add(key)

    def _on_pod_deleted(self, pod: Obj) -> None:
        key = owner_key(pod, "DaemonSet")
        if key:
            self.expectations.deletion_observed(key, pod["metadata"]["uid"])
            self.queue.add(key)

    def _on_node(self, _node: Obj) -> None:
        for ds in self.daemonsets.list():
            self.enqueue(ds)

    def _on_node_updated(self, old: Obj, new: Obj) -> None:
        def relevant(n: Obj) -> Any:
            return (n["metadata"].get("labels"), (n.get("spec") or {}).get("taints"))
        if relevant(old) != relevant(new):
            self._on_node(new)

    # -- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        if ds["metadata"].get("deletionTimestamp"):
            return  # the garbage collector takes the pods
        revision_hash = await self._sync_revisions(ds)
        placements = self._placements(ds)
        if self.expectations.satisfied(key):
            await self._manage(key, ds, placements, revision_hash)
        await self._write_status(ds, placements, revision_hash)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        if min_ready and any(p.pods and is_pod_ready(p.pods[0]) for p in placements):
            self.queue.add_after(key, min_ready)  # availability comes with time alone

    def _placements(self, ds: Obj) -> list[NodePlacement]:
        spec = (ds["spec"].get("template") or {}).get("spec") or {}
        selector = selector_of(ds)
        by_node: dict[str, list[Obj]] = {}
        for pod in self.pods.by_index("daemonset-owner", ds["metadata"]["uid"]):
            if pod["metadata"].get("deletionTimestamp") or \
                    not selector.matches(pod["metadata"].get("labels") or {}):
                continue
            by_node.setdefault(node_of_pod(pod), []).append(pod)
        out = []
        for node in self.nodes.list():
            name = node["metadata"]["name"]
            run, keep = should_run(spec, node)
            out.append(NodePlacement(name, run, keep, _by_age(by_node.pop(name, []))))
        # pods aimed at nodes that are gone: never scheduled, so the pod GC (which takes
        # bound pods) won't see them; they must not run anywhere
        for name, pods in by_node.items():
            unscheduled = [p for p in pods if not (p.get("spec") or {}).get("nodeName")]
            if unscheduled:
                out.append(NodePlacement(name, False, False, _by_age(unscheduled),
                                         node_gone=True))
        return out

    async def _manage(self, key: str, ds: Obj, placements: list[NodePlacement],
                      revision_hash: str) -> None:
        to_create: list[str] = []
        to_delete: list[Obj] = []
        for p in placements:
            if p.should_run and not p.pods:
                to_create.append(p.node)
            elif not p.keep_running:
                to_delete.extend(p.pods)
            elif p.pods:
                failed = [q for q in p.pods if (q.get("status") or {}).get("phase") == "Failed"]
                running = [q for q in p.pods if q not in failed]
                to_delete.extend(failed)
                to_delete.extend(running[1:])  # duplicates: keep the oldest
                if failed and not running and p.should_run:
                    to_create.append(p.node)
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not to_create:
            to_delete.extend(self._rolling_update_victims(ds, placements, revision_hash,
                                                          {q["metadata"]["uid"]
                                                           for q in to_delete}))
        await self._delete_pods(key, to_delete)
        await self._create_pods(key, ds, to_create, revision_hash)

    def _rolling_update_victims(self, ds: Obj, placements: list[NodePlacement],
                                revision_hash: str, already: set[str]) -> list[Obj]:
        """Old-revision pods to delete now, within maxUnavailable (maxSurge 0)."""
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        desired = sum(1 for p in placements if p.should_run)
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        # percentages round up, as Kubernetes' DaemonSet controller scales them
        max_unavailable = scaled_value(ru.get("maxUnavailable", 1), desired, round_up=True)
        surge = scaled_value(ru.get("maxSurge", 0), desired, round_up=True)
        if max_unavailable == 0 and surge == 0:
            max_unavailable = 1
        unavailable = 0
        old_available: list[Obj] = []
        victims: list[Obj] = []
        for p in placements:
            if not p.should_run:
                continue
            pods = [q for q in p.pods if q["metadata"]["uid"] not in already]
            if not pods:
                unavailable += 1
                continue
            pod = pods[0]
            available = is_pod_available(pod, min_ready, now)
            if not available:
                unavailable += 1
            if (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) == revision_hash:
                continue
            if available:
                old_available.append(pod)
            else:
                victims.append(pod)  # already down: replacing it costs nothing
        budget = max(max_unavailable - unavailable, 0)
        return victims + _by_age(old_available)[:budget]

    async def _delete_pods(self, key: str, pods: list[Obj]) -> None:
        if pods:
            await delete_expected(self.client, self.pod_rt, self.expectations, key, pods)

    async def _create_pods(self, key: str, ds: Obj, nodes: list[str], revision_hash: str
                           ) -> None:
        """Slow start: batches of 1, 2, 4, ... stopping at the first failure."""
        ns, _ = split_key(key)
        batch, i = 1, 0
        while i < len(nodes):
            chunk = nodes[i:i + batch]
            self.expectations.expect_creations(key, len(chunk))
            failures = 0
            first_error: errors.ApiError | None = None
            for node in chunk:
                try:
                    await self.client.create(self.pod_rt,
                                             _pod_from_template(ds, node, revision_hash), ns)
                except errors.ApiError as e:
                    self.expectations.creation_observed(key)
                    failures += 1
                    first_error = first_error or e
            if first_error is not None:
                if first_error.code in (400, 403, 422):  # the user's: say so, don't hammer
                    await record_event(self.client, ds, component=COMPONENT,
                                       type_="Warning", reason="FailedCreate",
                                       message=f"Error creating: {first_error.message}")
                raise first_error
            i += batch
            batch *= 2

    # -- revisions ----------------------------------------------------------------------

    async def _sync_revisions(self, ds: Obj) -> str:
        """Make sure the template's ControllerRevision exists and is the newest (`_history`,
        shared with the StatefulSet); trim history beyond revisionHistoryLimit. Returns the
        revision's hash, the label its pods carry."""
        owned = self.revisions.by_index("daemonset-owner", ds["metadata"]["uid"])
        synced = await history.sync_revision(
            self.client, self.cr_rt, ds, history.revision_data(ds["spec"].get("template")),
            owned, collision_count=int((ds.get("status") or {}).get("collisionCount") or 0))
        revision_hash = (synced.revision["metadata"].get("labels") or {}).get(
            REVISION_HASH_LABEL, "")
        in_use = {(p["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL)
                  for p in self.pods.by_index("daemonset-owner", ds["metadata"]["uid"])}
        live = {r["metadata"]["name"] for r in synced.revisions
                if (r["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL) in in_use}
        live.add(synced.revision["metadata"]["name"])
        limit = ds["spec"].get("revisionHistoryLimit", 10)
        for r in history.revisions_to_delete(synced.revisions, live, limit):
            try:
                await self.client.delete(self.cr_rt, r["metadata"]["name"],
                                         r["metadata"]["namespace"])
            except errors.ApiError as e:
                if e.code != 404:
                    raise
        return revision_hash

    # -- status and events --------------------------------------------------------------

    async def _write_status(self, ds: Obj, placements: list[NodePlacement],
                            revision_hash: str) -> None:
        status = calculate_status(ds, placements, revision_hash, datetime.now(UTC))
        if status == (ds.get("status") or {}):
            return
        try:
            await self.client.update_status(self.ds_rt, {**ds, "status": status})
        except errors.ApiError as e:
            if e.code != 404:
                raise  # a conflict: the cache catches up, the retry writes again

def _owner_uid(obj: Obj) -> list[str]:
    uid = controller_uid(obj, "DaemonSet")
    return [uid] if uid else []

