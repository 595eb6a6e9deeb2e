"""A StatefulSet's pods and claims: stable identities, as pure functions
(Kubernetes' `statefulset/stateful_set_utils.go`).

- Pod `<set>-<ordinal>`, ordinals from `spec.ordinals.start` (default 0). Its
  identity: `hostname` = its name and `subdomain` = `serviceName` (so the headless
  Service gives it `<pod>.<service>` in DNS), the labels
  `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
  `controller-revision-hash` (the name of the revision it was made from).
- One claim per pod and `volumeClaimTemplates` entry, `<template>-<set>-<ordinal>`,
  labelled with the set's `selector.matchLabels`; the pod's volume of the template's
  name becomes that claim (replacing a template volume of the same name). The claim
  outlives the pod, so a recreated pod gets the same data.
- Claim owners follow `persistentVolumeClaimRetentionPolicy`: whenDeleted=Delete
  makes the set the claim's controller (the garbage collector deletes the claim with
  the set); whenScaled=Delete makes a *condemned* pod (ordinal beyond the replicas)
  the controller, so the claim goes with that pod. Retain/Retain leaves the claim
  ownerless. A claim controlled by someone else is left with none of ours.
"""

from __future__ import annotations

import copy
import re

from pinnace.api.types import Obj
from pinnace.controllers._history import REVISION_HASH_LABEL
from pinnace.controllers.pod_template import (
    controller_ref,
    is_pod_available,
    is_pod_ready,
    pod_from_template,
)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-(\d+)$")


# -- ordinals ------------------------------------------------------------------------------

def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replicas(sts: Obj) -> int:
    replicas = (sts.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def ordinal_range(sts: Obj) -> range:
    start = start_ordinal(sts)
    return range(start, start + replicas(sts))


def parent_and_ordinal(name: str) -> tuple[str, int] | None:
    m = _ORDINAL.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def ordinal_of(pod: Obj) -> int:
    """The pod's ordinal, -1 for a name no StatefulSet gives."""
    parsed = parent_and_ordinal(pod["metadata"].get("name", ""))
    return parsed[1] if parsed else -1


def is_member(sts: Obj, pod: Obj) -> bool:
    """The pod's name is one this set gives (`<set>-<n>`)."""
    parsed = parent_and_ordinal(pod["metadata"].get("name", ""))
    return parsed is not None and parsed[0] == sts["metadata"]["name"]


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def revision_of(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL, "")


# -- pod state (isCreated, isRunningAndReady, isHealthy …) ---------------------------------

def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    return phase(pod) == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: Obj, min_ready_seconds: int) -> bool:
    return phase(pod) == "Running" and is_pod_available(pod, min_ready_seconds)


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def is_finished(pod: Obj) -> bool:
    return phase(pod) in ("Failed", "Succeeded")


# -- claims ---------------------------------------------------------------------------------

def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{sts['metadata']['name']}-{ordinal}"


def claims_for(sts: Obj, ordinal: int) -> dict[str, Obj]:
    """The claims of the pod at `ordinal`, by template name (without owner references:
    `claim_owner_refs` decides those)."""
    match = ((sts["spec"].get("selector") or {}).get("matchLabels")) or {}
    out: dict[str, Obj] = {}
    for template in sts["spec"].get("volumeClaimTemplates") or []:
        claim = copy.deepcopy(template)
        meta = claim.setdefault("metadata", {})
        meta["name"] = claim_name(template, sts, ordinal)
        meta["namespace"] = sts["metadata"].get("namespace")
        meta["labels"] = {**(meta.get("labels") or {}), **match}
        for key in ("uid", "resourceVersion", "creationTimestamp", "ownerReferences"):
            meta.pop(key, None)
        claim.pop("status", None)
        claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
        out[template["metadata"]["name"]] = claim
    return out


def retention(sts: Obj) -> tuple[str, str]:
    """(whenDeleted, whenScaled) of the set's claim retention policy."""
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def claim_owner_refs(claim: Obj, sts: Obj, pod: Obj | None, ordinal: int) -> list[Obj]:
    """The claim's ownerReferences as the retention policy wants them (Kubernetes'
    updateClaimOwnerRefForSetAndPod): refs to this set and this pod (by name) are
    rewritten, all others kept."""
    set_uid = sts["metadata"]["uid"]
    own = pod_name(sts, ordinal)

    def ours(ref: Obj) -> bool:
        return (ref.get("kind") == "StatefulSet" and ref.get("name") == sts["metadata"]["name"]) \
            or ref.get("uid") == set_uid or (ref.get("kind") == "Pod" and ref.get("name") == own)

    refs = list(claim["metadata"].get("ownerReferences") or [])
    kept = [r for r in refs if not ours(r)]
    if any(r.get("controller") for r in kept):
        return kept  # someone else controls the claim: keep out
    when_deleted, when_scaled = retention(sts)
    condemned = ordinal not in ordinal_range(sts)
    if when_scaled == "Delete" and condemned:
        if pod is not None:
            kept.append(controller_ref(pod))
    elif when_deleted == "Delete":
        kept.append(controller_ref(sts))
    return kept


def is_stale(claim: Obj, pod_name_: str) -> bool:
    """The claim is owned by a pod of that name, which is gone (the caller is about to
    create the pod): the garbage collector will delete the claim."""
    return any(r.get("kind") == "Pod" and r.get("name") == pod_name_
               for r in claim["metadata"].get("ownerReferences") or [])


def same_refs(a: list[Obj], b: list[Obj]) -> bool:
    def key(r: Obj) -> tuple[str, str, bool]:
        return r.get("uid", ""), r.get("kind", ""), bool(r.get("controller"))
    return sorted(map(key, a)) == sorted(map(key, b))


# -- new pods -------------------------------------------------------------------------------

def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    """The pod at `ordinal` made from `template` (the one of revision `revision`)."""
    name = pod_name(sts, ordinal)
    pod = pod_from_template(template, owner=sts, extra_labels={
        POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_HASH_LABEL: revision})
    meta = pod["metadata"]
    del meta["generateName"]
    meta["name"] = name
    spec = pod["spec"]
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = claims_for(sts, ordinal)
    volumes = [{"name": tname, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
               for tname, c in claims.items()]
    volumes += [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
    if volumes:
        spec["volumes"] = volumes
    return pod


def missing_identity(pod: Obj) -> dict[str, str]:
    """The identity labels the pod lacks or has wrong (an adopted pod, or one someone
    relabelled), to be put back (Kubernetes' updateIdentity)."""
    ordinal = ordinal_of(pod)
    want = {POD_NAME_LABEL: pod["metadata"]["name"], POD_INDEX_LABEL: str(ordinal)}
    labels = pod["metadata"].get("labels") or {}
    return {k: v for k, v in want.items() if labels.get(k) != v}


def uses_update_revision(sts: Obj, ordinal: int) -> bool:
    """Whether a pod created now at `ordinal` is made from the update revision (else the
    current one): under RollingUpdate, ordinals below the partition keep the current
    revision (Kubernetes' newVersionedStatefulSetPod)."""
    strategy = sts["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return True
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        current = int((sts.get("status") or {}).get("currentReplicas") or 0)
        return ordinal >= start_ordinal(sts) + current
    return ordinal >= start_ordinal(sts) + int(rolling.get("partition") or 0)
