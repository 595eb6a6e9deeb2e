"""Small pure rules of the generic registry's writes: the finalizers a propagation policy
leaves, when an update completes a deletion, what counts as a no-op write, how a body's
name must match the URL's, what a status or binding write decodes, a delete's
preconditions and propagation policy, and how an object is marked deleting. Kept apart
so registry.py reads as the life of an object."""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.api.kinds import ResourceType
from pinnace.api.timestamps import after, now_rfc3339
from pinnace.api.types import Obj
from pinnace.apiserver.objects import deep_copy, meta, without_volatile
from pinnace.apiserver.strategy import Strategy


def gc_finalizers(finalizers: list[str], policy: str | None) -> list[str]:
    """The finalizers after a delete with this propagation policy: an explicit policy
    replaces the garbage collector's finalizers (orphan, foregroundDeletion); none
    keeps what the object has."""
    if policy is None:
        return finalizers
    out = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
    if policy == "Foreground":
        out.append("foregroundDeletion")
    elif policy == "Orphan":
        out.append("orphan")
    return out


def should_delete_during_update(strategy: Strategy, new: Obj, old: Obj) -> bool:
    """An update completes a pending deletion when it leaves no finalizers and the
    deletion has no grace period left to run (Kubernetes' ShouldDeleteDuringUpdate);
    the strategy may hold it longer (a namespace's spec.finalizers)."""
    om = old["metadata"]
    if not om.get("deletionTimestamp") or new["metadata"].get("finalizers"):
        return False
    if om.get("deletionGracePeriodSeconds"):
        return False  # a graceful pod deletion: its node agent finishes it
    return not strategy.finalizing(new)


def same_but_managed_time(new: Obj, old: Obj) -> bool:
    """True when only managedFields timestamps differ (a no-op write)."""
    if without_volatile(new) != without_volatile(old):
        return False
    def strip(mf: list[Obj] | None) -> list[Obj]:
        return [{k: v for k, v in e.items() if k != "time"} for e in (mf or [])]
    return strip(new["metadata"].get("managedFields")) == \
        strip(old["metadata"].get("managedFields"))


def patch_names_rv(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("metadata"), dict) and \
        "resourceVersion" in body["metadata"]


def named(obj: Obj, name: str) -> dict[str, Any]:
    """The body's metadata, named as the URL names it (a different name is refused)."""
    m = meta(obj)
    if m.get("name") and m["name"] != name:
        raise errors.bad_request(
            f"the name of the object ({m['name']}) does not match the name on the URL "
            f"({name})")
    m["name"] = name
    return m


def subresource_part(body: Any, subresource: str, field_validation: str) -> Any:
    """What a status or binding write takes from its body: everything else comes from the
    stored object, so decoding the rest (a whole pod spec, on every status report and
    every bind) would be wasted. Strict validation still sees the whole body."""
    if subresource not in ("status", "binding") or field_validation == "Strict" or \
            not isinstance(body, dict):
        return body
    part = {k: body[k] for k in ("apiVersion", "kind", "metadata", "status") if k in body}
    spec = body.get("spec")
    if subresource == "binding" and isinstance(spec, dict):
        part["spec"] = {"nodeName": spec.get("nodeName")}
    return part


def check_delete_preconditions(rt: ResourceType, current: Obj, pre: dict[str, Any]) -> None:
    """A delete's preconditions (uid, resourceVersion) against the current object: 409
    when one does not hold."""
    m = current["metadata"]
    name = m["name"]
    if pre.get("uid") and pre["uid"] != m.get("uid"):
        raise errors.conflict(
            rt.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
            f"UID in object meta: {m.get('uid')}", rt.group)
    if pre.get("resourceVersion") and pre["resourceVersion"] != m.get("resourceVersion"):
        raise errors.conflict(
            rt.plural, name, f"Precondition failed: ResourceVersion in precondition: "
            f"{pre['resourceVersion']}, ResourceVersion in object meta: "
            f"{m.get('resourceVersion')}", rt.group)


def propagation_policy(options: dict[str, Any]) -> str | None:
    """The DeleteOptions' propagation policy (the old orphanDependents read as one);
    None when they name none and the kind's default applies."""
    policy = options.get("propagationPolicy")
    if policy is None and options.get("orphanDependents") is not None:
        policy = "Orphan" if options["orphanDependents"] else "Background"
    if policy not in (None, "Background", "Foreground", "Orphan"):
        raise errors.invalid("DeleteOptions", "", [errors.Cause(
            "propagationPolicy", f'Unsupported value: "{policy}": supported values: '
            '"Foreground", "Background", "Orphan", "nil"', errors.NOT_SUPPORTED)])
    return policy


def marked_deleting(current: Obj, finalizers: list[str], grace: int) -> Obj:
    """A copy of current as a delete leaves it while finalizers or a grace period hold
    it: the finalizers, and the deletion's deadline."""
    om = current["metadata"]
    new = deep_copy(current)
    m = new["metadata"]
    if finalizers:
        m["finalizers"] = finalizers
    else:
        m.pop("finalizers", None)
    # deletionTimestamp is when the grace period ends; marking an object deleted
    # bumps its generation (Kubernetes' BeforeDelete / markAsDeleting)
    if not om.get("deletionTimestamp"):
        m["deletionTimestamp"] = after(now_rfc3339(), grace)
        m["deletionGracePeriodSeconds"] = grace
        if om.get("generation"):
            m["generation"] = om["generation"] + 1
    elif grace < (om.get("deletionGracePeriodSeconds") or 0):
        # a grace period may only shrink; the deadline moves with it
        old_grace = om.get("deletionGracePeriodSeconds") or 0
        m["deletionTimestamp"] = after(om["deletionTimestamp"], grace - old_grace)
        m["deletionGracePeriodSeconds"] = grace
    return new
