"""The Deployment controller: roll a pod template out through ReplicaSets.

Watches Deployments, ReplicaSets and Pods; owns ReplicaSets named
`<deployment>-<pod-template-hash>` whose selector and template carry the
`pod-template-hash` label, so the ReplicaSets of one Deployment never fight
over pods. The arithmetic lives in `_rollout.py`; this module decides and writes.

`reconcile(namespace/name)`:
1. claim ReplicaSets (adopt matching orphans, release owned ones that stopped
   matching); the *new* ReplicaSet is the one whose template equals the
   Deployment's, the others are *old*. Revisions (annotation
   `deployment.kubernetes.io/revision`) are synced: the new one is numbered
   above every old one, so `kubectl rollout undo` — which patches an old
   ReplicaSet's template back into the Deployment — revives that ReplicaSet
   under a new revision, as in Kubernetes.
2. paused (`spec.paused`): only scale, and condition Progressing
   DeploymentPaused; a changed `spec.replicas` alone (scaling event): scale the
   ReplicaSets proportionally.
3. otherwise roll out: RollingUpdate grows the new ReplicaSet within maxSurge
   and shrinks old ones within maxUnavailable, one step per reconcile (each
   step's ReplicaSet events bring the next); Recreate scales old ones to zero,
   waits until their pods are gone, then creates the new one at full size.
4. once complete, old ReplicaSets beyond `revisionHistoryLimit` are deleted.
5. status and conditions (Available, Progressing with its deadline,
   ReplicaFailure) are written when they change; a rollout that may time out is
   looked at again when its deadline passes.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime

from pinnace.api.conditions import get_condition, same_status
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers import _rollout as ro
from pinnace.controllers.base import (
    Controller,
    claim,
    delete_if_same,
    owner_key,
    selector_of,
)
from pinnace.controllers.pod_template import controller_of, controller_ref

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.deployments = self.watch("apps/v1", "Deployment", on_delete=self.enqueue)
        self.replicasets = factory.informer("apps/v1", "ReplicaSet")
        self.pods = factory.informer("v1", "Pod")
        self.d_rt = client.resource("apps/v1", "Deployment")
        self.rs_rt = client.resource("apps/v1", "ReplicaSet")
        self.replicasets.add_handler(on_add=self._rs_changed,
                                     on_update=self._rs_updated, on_delete=self._rs_changed)
        # Recreate waits for old pods to be gone: their deletion wakes the Deployment
        self.pods.add_handler(on_delete=self._pod_deleted)

    # -- event handlers --------------------------------------------------------------------

    def _rs_changed(self, rs: Obj) -> None:
        key = owner_key(rs, "Deployment")
        if key is not None:
            self.queue.add(key)
        elif controller_of(rs) is None:  # an orphan: whoever may adopt it
            self.enqueue_selecting(self.deployments, rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        old_key = owner_key(old, "Deployment")
        if old_key is not None and old_key != owner_key(new, "Deployment"):
            self.queue.add(old_key)
        self._rs_changed(new)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_of(pod, "ReplicaSet")
        if ref is None:
            return
        rs = self.replicasets.get_by_name(ref["name"], pod["metadata"].get("namespace"))
        if rs is not None:
            key = owner_key(rs, "Deployment")
            if key is not None:
                self.queue.add(key)

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        selector = d["spec"].get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            # an empty selector would select every pod: refuse, as Kubernetes does
            await record_event(self.client, d, component=COMPONENT, type_="Warning",
                               reason="SelectingAll",
                               message="This deployment is selecting all pods. A non-empty "
                                       "selector is required.")
            return
        rss = await self._claim_replicasets(d)
        if d["metadata"].get("deletionTimestamp"):
            await self._write_status(d, ro.calculate_status(d, rss, ro.find_new_rs(d, rss)))
            return
        await self._check_paused_conditions(d)
        new_rs, old_rss = await self._sync_revision(d, rss)
        if d["spec"].get("paused") or self._is_scaling_event(d, new_rs, old_rss):
            await self._scale(d, new_rs, old_rss)
            if d["spec"].get("paused"):
                await self._cleanup(d, old_rss)
            all_rss = old_rss + ([new_rs] if new_rs else [])
            await self._write_status(d, ro.calculate_status(d, all_rss, new_rs))
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._rollout_recreate(d, new_rs, old_rss)
        else:
            await self._rollout_rolling(d, new_rs, old_rss)

    async def _claim_replicasets(self, d: Obj) -> list[Obj]:
        alive = [rs for rs in self.replicasets.list(d["metadata"]["namespace"])
                 if not rs["metadata"].get("deletionTimestamp")]
        claimed = await claim(self.client, self.rs_rt, d, alive, selector_of(d))
        return [copy.deepcopy(rs) for rs in claimed]  # the rollout edits them

    # -- revisions and the new ReplicaSet --------------------------------------------------

    async def _sync_revision(self, d: Obj, rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """(new ReplicaSet or None, old ones); numbers the new one above the old ones."""
        new_rs = ro.find_new_rs(d, rss)
        old_rss = [rs for rs in rss if rs is not new_rs]
        if new_rs is None:
            return None, old_rss
        new_revision = max((ro.revision(rs) for rs in old_rss), default=0) + 1
        updated = copy.deepcopy(new_rs)
        changed = _set_new_rs_annotations(d, updated, new_revision)
        min_ready = d["spec"].get("minReadySeconds", 0)
        if updated["spec"].get("minReadySeconds", 0) != min_ready:
            updated["spec"]["minReadySeconds"] = min_ready
            changed = True
        if changed:
            new_rs = await self.client.update(self.rs_rt, updated)
        await self._set_deployment_revision(d, ro.revision(new_rs))
        if ro.has_progress_deadline(d) and \
                get_condition(d.get("status") or {}, "Progressing") is None:
            status = copy.deepcopy(d.get("status") or {})
            ro.set_condition(status, ro.deployment_condition(
                "Progressing", "True", "FoundNewReplicaSet",
                f'Found new replica set "{new_rs["metadata"]["name"]}"'))
            await self._write_status(d, status)
        return new_rs, old_rss

    async def _create_new_rs(self, d: Obj, old_rss: list[Obj]) -> Obj:
        status = d.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        template = copy.deepcopy(d["spec"]["template"])
        pod_hash = ro.template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[ro.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[ro.HASH_LABEL] = pod_hash
        new_revision = max((ro.revision(rs) for rs in old_rss), default=0) + 1
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{pod_hash}",
                         "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [controller_ref(d)]},
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = ro.new_rs_new_replicas(d, [*old_rss, rs], rs)
        _set_new_rs_annotations(d, rs, new_revision)
        rs["metadata"]["annotations"].update(ro.replicas_annotations(d))
        try:
            created = await self.client.create(self.rs_rt, rs)
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get(self.rs_rt, rs["metadata"]["name"],
                                             d["metadata"]["namespace"])
            ref = controller_of(existing)
            if ref is not None and ref.get("uid") == d["metadata"]["uid"] and \
                    ro.equal_ignore_hash(existing["spec"]["template"], d["spec"]["template"]):
                return existing  # ours: the informer had not shown it yet
            # a different ReplicaSet holds the name: hash again with a bumped count
            new_status = copy.deepcopy(status)
            new_status["collisionCount"] = collisions + 1
            await self._write_status(d, new_status)
            raise RuntimeError(f"hash collision for {rs['metadata']['name']}") from e
        if ro.replicas(created) > 0:
            await self._event(d, "ScalingReplicaSet", f"Scaled up replica set "
                              f"{created['metadata']['name']} from 0 to "
                              f"{ro.replicas(created)}")
        await self._set_deployment_revision(d, new_revision)
        if ro.has_progress_deadline(d):
            new_status = copy.deepcopy(d.get("status") or {})
            ro.set_condition(new_status, ro.deployment_condition(
                "Progressing", "True", "NewReplicaSetCreated",
                f'Created new replica set "{created["metadata"]["name"]}"'))
            await self._write_status(d, new_status)
        return created

    async def _set_deployment_revision(self, d: Obj, rev: int) -> None:
        annotations = d["metadata"].get("annotations") or {}
        if annotations.get(ro.REVISION) == str(rev):
            return
        out = await self.client.patch(
            self.d_rt, d["metadata"]["name"],
            {"metadata": {"annotations": {ro.REVISION: str(rev)},
                          "resourceVersion": d["metadata"]["resourceVersion"]}},
            namespace=d["metadata"]["namespace"])
        d["metadata"] = out["metadata"]

    # -- scaling ---------------------------------------------------------------------------

    def _is_scaling_event(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        for rs in ro.active(old_rss + ([new_rs] if new_rs else [])):
            desired = (rs["metadata"].get("annotations") or {}).get(ro.DESIRED_REPLICAS)
            if desired is not None and desired != str(ro.replicas(d)):
                return True
        return False

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        target = ro.find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if ro.replicas(target) != ro.replicas(d):
                await self._scale_rs(d, target, ro.replicas(d))
            return
        if ro.is_saturated(d, new_rs):
            for rs in ro.active(old_rss):
                await self._scale_rs(d, rs, 0)
            return
        if (d["spec"].get("strategy") or {}).get("type") != "Recreate":
            all_rss = old_rss + ([new_rs] if new_rs else [])
            for rs, size in ro.proportional_sizes(d, all_rss):
                await self._scale_rs(d, rs, size)

    async def _scale_rs(self, d: Obj, rs: Obj, size: int) -> tuple[bool, Obj]:
        """Set rs's replicas (and its desired/max annotations): (size changed, new rs)."""
        want = ro.replicas_annotations(d)
        annotations = rs["metadata"].get("annotations") or {}
        resized = ro.replicas(rs) != size
        if not resized and all(annotations.get(k) == v for k, v in want.items()):
            return False, rs
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = size
        updated["metadata"].setdefault("annotations", {}).update(want)
        out = await self.client.update(self.rs_rt, updated)
        if resized:
            direction = "up" if size > ro.replicas(rs) else "down"
            await self._event(d, "ScalingReplicaSet",
                              f"Scaled {direction} replica set {rs['metadata']['name']} "
                              f"from {ro.replicas(rs)} to {size}")
        return resized, out

    # -- strategies ------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        if new_rs is None:
            new_rs = await self._create_new_rs(d, old_rss)
        all_rss = [*old_rss, new_rs]
        # grow the new ReplicaSet within the surge ...
        if ro.replicas(new_rs) > ro.replicas(d):
            want = ro.replicas(d)
        else:
            want = ro.new_rs_new_replicas(d, all_rss, new_rs)
        if want != ro.replicas(new_rs) and (await self._scale_rs(d, new_rs, want))[0]:
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        # ... then shrink old ones while enough pods stay available
        if await self._scale_down_old(d, new_rs, old_rss):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if ro.is_complete(d, ro.calculate_status(d, all_rss, new_rs)):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    async def _scale_down_old(self, d: Obj, new_rs: Obj, old_rss: list[Obj]) -> bool:
        if sum(ro.replicas(rs) for rs in old_rss) == 0:
            return False
        all_rss = [*old_rss, new_rs]
        min_available = ro.replicas(d) - ro.max_unavailable(d)
        new_unavailable = ro.replicas(new_rs) - ro.available(new_rs)
        budget = sum(ro.replicas(rs) for rs in all_rss) - min_available - new_unavailable
        if budget <= 0:
            return False
        olds = sorted(old_rss, key=ro.created)
        scaled = 0
        # first the old pods that are not available anyway: losing them costs nothing
        for i, rs in enumerate(olds):
            if scaled >= budget:
                break
            unhealthy = ro.replicas(rs) - ro.available(rs)
            if ro.replicas(rs) == 0 or unhealthy <= 0:
                continue
            count = min(budget - scaled, unhealthy)
            _, olds[i] = await self._scale_rs(d, rs, ro.replicas(rs) - count)
            scaled += count
        # then available ones, down to minAvailable
        avail = sum(ro.available(rs) for rs in olds) + ro.available(new_rs)
        excess = avail - min_available
        done = 0
        for rs in olds:
            if done >= excess:
                break
            if ro.replicas(rs) == 0:
                continue
            count = min(ro.replicas(rs), excess - done)
            await self._scale_rs(d, rs, ro.replicas(rs) - count)
            done += count
        return scaled + max(done, 0) > 0

    async def _rollout_recreate(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        all_rss = old_rss + ([new_rs] if new_rs else [])
        scaled = False
        for rs in ro.active(old_rss):
            scaled = (await self._scale_rs(d, rs, 0))[0] or scaled
        if scaled or self._old_pods_running(old_rss):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if new_rs is None:
            new_rs = await self._create_new_rs(d, old_rss)
            all_rss = [*old_rss, new_rs]
        await self._scale_rs(d, new_rs, ro.replicas(d))
        if ro.is_complete(d, ro.calculate_status(d, all_rss, new_rs)):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, old_rss: list[Obj]) -> bool:
        if sum(ro.st(rs, "replicas") for rs in old_rss) > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old_rss}
        if not old_uids:
            return False
        for pod in self.pods.list(old_rss[0]["metadata"]["namespace"]):
            ref = controller_of(pod)
            if ref is not None and ref.get("uid") in old_uids and \
                    (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return True  # terminating ones too: Recreate promises no overlap
        return False

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        surplus = len(alive) - int(limit)
        if surplus <= 0:
            return
        for rs in sorted(alive, key=lambda r: (ro.revision(r), ro.created(r)))[:surplus]:
            if ro.st(rs, "replicas") or ro.replicas(rs) or \
                    rs["metadata"].get("generation", 0) > ro.st(rs, "observedGeneration"):
                continue
            await delete_if_same(self.client, self.rs_rt, rs)

    # -- status ----------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> None:
        if not ro.has_progress_deadline(d):
            return
        cond = get_condition(d.get("status") or {}, "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        paused_cond = cond is not None and cond.get("reason") == "DeploymentPaused"
        status = copy.deepcopy(d.get("status") or {})
        if d["spec"].get("paused") and not paused_cond:
            ro.set_condition(status, ro.deployment_condition("Progressing", "Unknown",
                                                      "DeploymentPaused", "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_cond:
            ro.set_condition(status, ro.deployment_condition("Progressing", "Unknown",
                                                      "DeploymentResumed",
                                                      "Deployment is resumed"))
        else:
            return
        await self._write_status(d, status)

    async def _sync_rollout_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None
                                   ) -> None:
        status = ro.rollout_status(d, all_rss, new_rs)
        await self._write_status(d, status)
        deadline = ro.progress_deadline_at(d, status)
        if deadline is not None and not ro.is_complete(d, status):
            delay = (deadline - datetime.now(UTC)).total_seconds() + 1.0
            self.queue.add_after(key_of(d), max(delay, 0.0))

    async def _write_status(self, d: Obj, status: Obj) -> None:
        """Write status if it changed; d then holds the written object."""
        if same_status(status, d.get("status") or {}):
            return
        d["status"] = status
        out = await self.client.update_status(self.d_rt, d)
        d["metadata"] = out["metadata"]

    async def _event(self, d: Obj, reason: str, message: str) -> None:
        await record_event(self.client, d, component=COMPONENT, type_="Normal", reason=reason,
                           message=message)


def _set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int) -> bool:
    """Copy the Deployment's annotations and raise rs's revision to new_revision,
    remembering the revisions it had in revision-history; True if rs changed."""
    annotations = rs["metadata"].setdefault("annotations", {})
    before = dict(annotations)
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k not in ro.NOT_COPIED:
            annotations[k] = v
    old = annotations.get(ro.REVISION)
    if ro.revision(rs) < new_revision:
        annotations[ro.REVISION] = str(new_revision)
        if old:
            history = annotations.get(ro.REVISION_HISTORY)
            annotations[ro.REVISION_HISTORY] = f"{history},{old}" if history else old
    return annotations != before
