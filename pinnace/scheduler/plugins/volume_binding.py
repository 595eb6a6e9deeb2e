"""VolumeBinding: a pod goes where its claims' volumes can be (Kubernetes' VolumeBinding
and VolumeRestrictions plugins, `pkg/scheduler/framework/plugins/volumebinding`, read for
behaviour).

- pre_filter sorts the pod's claims: a missing claim (`persistentvolumeclaim "x" not
  found`), one being deleted, or an unbound claim of an Immediate class ("pod has unbound
  immediate PersistentVolumeClaims": the PV binder binds those, the pod waits) rejects
  every node; so does a ReadWriteOncePod claim another pod already uses. Bound claims
  and unbound claims of WaitForFirstConsumer classes go on to the node loop.
- filter, per node: a bound claim's volume must admit the node (its nodeAffinity:
  "node(s) didn't match PersistentVolume's node affinity"; a volume that does not exist:
  "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"); each
  claim to bind needs an Available volume that admits the node (pv_matching, the same
  choice the binder makes, smallest claims first so each gets its own volume) or a class
  whose provisioner can provision there ("node(s) didn't find available persistent
  volumes to bind").
- reserve remembers the volumes chosen for the node, so the next pod does not choose
  them too while this one binds; unreserve forgets them.
- pre_bind writes the decisions as Kubernetes' scheduler does — a chosen static volume
  gets the claim's claimRef (and bound-by-controller); a claim to provision gets
  `volume.kubernetes.io/selected-node` — then waits until the binder (and the
  provisioner) have bound every claim, so the node agent never sees an unbound claim.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field

from pinnace.api import pv_matching as pvm
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.scheduler.framework import SUCCESS, Handle, NodeInfo, PodInfo, Status

NODE_CONFLICT = "node(s) didn't match PersistentVolume's node affinity"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
RWOP_CONFLICT = ("node has pod using PersistentVolumeClaim with the same name and "
                 "ReadWriteOncePod access mode")
BIND_TIMEOUT = 600.0  # seconds pre_bind waits for the binder (Kubernetes' bindTimeout)
POLL = 0.05


def _claim_names(pod: Obj) -> list[str]:
    return [v["persistentVolumeClaim"].get("claimName", "")
            for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")]


@dataclass
class _PodClaims:
    bound: list[Obj] = field(default_factory=list)
    to_bind: list[Obj] = field(default_factory=list)


@dataclass
class _Decision:
    static: list[tuple[Obj, Obj]] = field(default_factory=list)  # (claim, volume)
    provision: list[Obj] = field(default_factory=list)  # claims
    reasons: set[str] = field(default_factory=set)
    waiting: list[str] = field(default_factory=list)  # claims pre_bind waits to see bound


def _fully_bound(claim: Obj) -> bool:
    return bool(claim["spec"].get("volumeName")) and \
        pvm.ANN_BIND_COMPLETED in (claim["metadata"].get("annotations") or {})


class VolumeBinding:
    name = "VolumeBinding"
    uses_handle = True

    def __init__(self, handle: Handle) -> None:
        self.client = handle.client
        self.claims = handle.factory.informer("v1", "PersistentVolumeClaim")
        self.volumes = handle.factory.informer("v1", "PersistentVolume")
        self.volumes.add_index(pvm.CANDIDATES_INDEX, pvm.candidates_index)
        self.classes = handle.factory.informer("storage.k8s.io/v1", "StorageClass")
        wake = handle.cluster_changed
        for informer in (self.claims, self.volumes, self.classes):
            informer.add_handler(on_add=lambda _o: wake(), on_update=lambda _o, _n: wake())
        self.claim_rt = handle.client.resource("v1", "PersistentVolumeClaim")
        self.volume_rt = handle.client.resource("v1", "PersistentVolume")
        # the claims of the pod in the current cycle (one cycle at a time)
        self._cycle: tuple[str, _PodClaims] | None = None
        self._reserved: dict[str, dict[str, str]] = {}  # pod key -> {volume: claim key}
        self._decisions: dict[str, _Decision] = {}  # pod key -> what pre_bind writes

    def applies(self, pod: PodInfo) -> bool:
        return bool(_claim_names(pod.obj))

    # -- PreFilter -----------------------------------------------------------------------

    def pre_filter(self, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        self._cycle = None
        claims = _PodClaims()
        for name in _claim_names(pod.obj):
            claim = self.claims.get(f"{pod.namespace}/{name}")
            if claim is None:
                return Status.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if claim["metadata"].get("deletionTimestamp"):
                return Status.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            if "ReadWriteOncePod" in pvm.access_modes(claim) and \
                    self._used_elsewhere(pod, name, nodes):
                return Status.unresolvable(RWOP_CONFLICT)
            if _fully_bound(claim):
                claims.bound.append(claim)
            elif not claim["spec"].get("volumeName") and \
                    pvm.is_delay_binding(self._class_of(claim)):
                claims.to_bind.append(claim)
            else:
                return Status.unresolvable(UNBOUND_IMMEDIATE)
        # smallest requests first, so each claim gets its own smallest volume
        claims.to_bind.sort(key=pvm.requested_storage)
        self._cycle = (pod.key, claims)
        return SUCCESS

    def _used_elsewhere(self, pod: PodInfo, claim_name: str, nodes: list[NodeInfo]) -> bool:
        for node in nodes:
            for other in node.pods.values():
                if other.key != pod.key and other.namespace == pod.namespace and \
                        claim_name in _claim_names(other.obj):
                    return True
        return False

    def _class_of(self, claim: Obj) -> Obj | None:
        name = pvm.claim_class(claim)
        return self.classes.get(name) if name else None

    # -- Filter --------------------------------------------------------------------------

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        decision = self._decide(pod, node_info)
        if decision.reasons:
            return Status.unresolvable(*sorted(decision.reasons))
        return SUCCESS

    def _decide(self, pod: PodInfo, node_info: NodeInfo) -> _Decision:
        claims = self._cycle[1] if self._cycle and self._cycle[0] == pod.key else _PodClaims()
        decision = _Decision(waiting=[c["metadata"]["name"] for c in claims.to_bind])
        labels, node_name = node_info.labels, node_info.name
        for claim in claims.bound:
            volume = self.volumes.get(claim["spec"]["volumeName"])
            if volume is None:
                decision.reasons.add(PV_NOT_EXIST)
            elif not pvm.node_affinity_matches(volume, labels, node_name):
                decision.reasons.add(NODE_CONFLICT)
        taken = {v for key, held in self._reserved.items() if key != pod.key for v in held}
        for claim in claims.to_bind:
            candidates = [v for k in pvm.candidate_keys(claim)
                          for v in self.volumes.by_index(pvm.CANDIDATES_INDEX, k)]
            volume = pvm.find_best_match(claim, candidates, delay_binding=True,
                                         node=(labels, node_name), excluded=taken)
            if volume is not None:
                taken.add(volume["metadata"]["name"])
                decision.static.append((claim, volume))
            elif self._can_provision(claim, labels):
                decision.provision.append(claim)
            else:
                decision.reasons.add(BIND_CONFLICT)
        return decision

    def _can_provision(self, claim: Obj, labels: dict[str, str]) -> bool:
        storage_class = self._class_of(claim)
        if storage_class is None:
            return False
        provisioner = storage_class.get("provisioner") or ""
        if not provisioner or provisioner == pvm.NO_PROVISIONER:
            return False
        terms = storage_class.get("allowedTopologies") or []
        return not terms or any(
            all(labels.get(e.get("key", "")) in (e.get("values") or [])
                for e in t.get("matchLabelExpressions") or []) for t in terms)

    # -- Reserve, PreBind, Unreserve -----------------------------------------------------

    def reserve(self, pod: PodInfo, node_info: NodeInfo) -> None:
        decision = self._decide(pod, node_info)
        self._reserved[pod.key] = {v["metadata"]["name"]: f"{pod.namespace}/"
                                   f"{c['metadata']['name']}" for c, v in decision.static}
        self._decisions[pod.key] = decision

    def unreserve(self, pod: PodInfo, node: str) -> None:
        self._reserved.pop(pod.key, None)
        self._decisions.pop(pod.key, None)

    async def pre_bind(self, pod: PodInfo, node: str) -> None:
        decision = self._decisions.pop(pod.key, None)
        try:
            if decision is None:
                return
            for claim, volume in decision.static:
                await self._prebind_volume(claim, volume)
            for claim in decision.provision:
                await self._select_node(claim, node)
            await self._wait_bound(pod, decision.waiting)
        finally:
            self._reserved.pop(pod.key, None)

    async def _prebind_volume(self, claim: Obj, volume: Obj) -> None:
        volume = copy.deepcopy(self.volumes.get(volume["metadata"]["name"]) or volume)
        if pvm.is_bound_to(volume, claim):
            return
        volume["spec"]["claimRef"] = pvm.claim_ref(claim)
        volume["metadata"].setdefault("annotations", {})[pvm.ANN_BOUND_BY_CONTROLLER] = "yes"
        await self.client.update(self.volume_rt, volume)

    async def _select_node(self, claim: Obj, node: str) -> None:
        m = claim["metadata"]
        current = self.claims.get(f"{m['namespace']}/{m['name']}") or claim
        if (current["metadata"].get("annotations") or {}).get(pvm.ANN_SELECTED_NODE) == node:
            return
        patch = {"metadata": {"uid": m["uid"], "annotations": {pvm.ANN_SELECTED_NODE: node}}}
        await self.client.patch(self.claim_rt, m["name"], patch, namespace=m["namespace"])

    async def _wait_bound(self, pod: PodInfo, names: list[str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BIND_TIMEOUT
        for name in names:
            while True:
                claim = self.claims.get(f"{pod.namespace}/{name}")
                if claim is None:
                    raise ApiError(404, "NotFound", f'persistentvolumeclaim "{name}" not found')
                if _fully_bound(claim):
                    break
                if loop.time() > deadline:
                    raise TimeoutError(f"binding volumes: timed out waiting for the claim "
                                       f'"{name}" to be bound')
                await asyncio.sleep(POLL)
