"""Which PersistentVolume a claim may bind: pure functions shared by the PV binder
(controllers/pv_binder.py) and the scheduler's VolumeBinding plugin, so both agree on one
answer (Kubernetes keeps them in component-helpers' `storage/volume/pv_helpers.go` for
the same reason).

Matching, as Kubernetes' `FindMatchingVolume` and the binder's access-mode index do it:

- candidates are grouped by their access-mode set; only sets holding every mode the
  claim asks for are tried, the smallest sets first (a claim for RWO gets a RWO volume
  before a RWO+RWX one), and within a set the smallest capacity >= the request wins
  (ties: by name, so the answer is stable);
- a volume pre-bound to this claim (claimRef naming it, uid empty or the claim's) wins
  at once, whatever its phase or class — unless it is too small, of another volumeMode,
  being deleted, or (scheduler path) its node affinity excludes the node;
- any other volume must be Available, unclaimed, of the claim's class ("" only with ""),
  of the same volumeMode, matched by the claim's selector, not being deleted, and
  (scheduler path) admit the node;
- the binder (no node) leaves claims of WaitForFirstConsumer classes to the scheduler:
  only a volume pre-bound to the claim is returned for them.

`volume_mismatch` words why a volume a claim names (spec.volumeName) cannot be bound,
as the binder's VolumeMismatch event says it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

from pinnace.api.errors import ApiError
from pinnace.api.quantity import parse_quantity
from pinnace.api.scheduling import node_selector_term_matches
from pinnace.api.selectors import LabelSelector
from pinnace.api.types import Obj

# annotations and finalizers Kubernetes' volume components write and read
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
# a class with this provisioner provisions nothing: static volumes only
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def claim_class(claim: Obj) -> str:
    """The claim's class: the beta annotation wins over spec.storageClassName; "" none."""
    ann = (claim.get("metadata") or {}).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS] or ""
    return (claim.get("spec") or {}).get("storageClassName") or ""


def volume_class(pv: Obj) -> str:
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS] or ""
    return (pv.get("spec") or {}).get("storageClassName") or ""


def class_unset(claim: Obj) -> bool:
    """No class asked for at all (nil, not ""): DefaultStorageClass may fill it in."""
    ann = (claim.get("metadata") or {}).get("annotations") or {}
    return (claim.get("spec") or {}).get("storageClassName") is None and \
        ANN_BETA_STORAGE_CLASS not in ann


def is_default_class(storage_class: Obj) -> bool:
    ann = (storage_class.get("metadata") or {}).get("annotations") or {}
    return ann.get(ANN_DEFAULT_CLASS) == "true" or ann.get(ANN_BETA_DEFAULT_CLASS) == "true"


def default_class(classes: Iterable[Obj]) -> Obj | None:
    """The default StorageClass; of several, the newest (Kubernetes 1.28+), then by name."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp") or "",
                                        c["metadata"]["name"]))


def is_delay_binding(storage_class: Obj | None) -> bool:
    """The claim's class binds at first consumer (a missing class binds at once)."""
    return storage_class is not None and \
        storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER


def _storage(resources: Mapping[str, object] | None) -> Fraction:
    value = (resources or {}).get("storage")
    try:
        return parse_quantity(value) if value is not None else Fraction(0)  # type: ignore
    except (ValueError, TypeError, ApiError):
        return Fraction(0)


def requested_storage(claim: Obj) -> Fraction:
    return _storage(((claim.get("spec") or {}).get("resources") or {}).get("requests"))


def volume_capacity(pv: Obj) -> Fraction:
    return _storage((pv.get("spec") or {}).get("capacity"))


def access_modes(obj: Obj) -> frozenset[str]:
    return frozenset((obj.get("spec") or {}).get("accessModes") or ())


def volume_mode_mismatch(claim: Obj, pv: Obj) -> bool:
    want = (claim.get("spec") or {}).get("volumeMode") or "Filesystem"
    have = (pv.get("spec") or {}).get("volumeMode") or "Filesystem"
    return want != have


def is_bound_to(pv: Obj, claim: Obj) -> bool:
    """The volume's claimRef names this claim (and, once set, its uid)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    m = claim["metadata"]
    if not ref or ref.get("name") != m["name"] or ref.get("namespace") != m.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == m.get("uid")


def node_affinity_matches(pv: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    """The volume's required node affinity admits the node (no affinity: every node)."""
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    if required is None:
        return True
    return any(node_selector_term_matches(t, labels, node_name)
               for t in required.get("nodeSelectorTerms") or [])


# The PV informers' index for matching, shared by the binder and the scheduler (one name,
# one function): an unclaimed volume under its class, a claimed one under its claim, so a
# claim's candidates are the free volumes of its class plus any reserved for it — not
# every volume ever bound.
CANDIDATES_INDEX = "pv-candidates"


def candidates_index(pv: Obj) -> list[str]:
    ref = (pv.get("spec") or {}).get("claimRef")
    if ref:
        return [f"claim:{ref.get('namespace')}/{ref.get('name')}"]
    return [f"class:{volume_class(pv)}"]


def candidate_keys(claim: Obj) -> tuple[str, str]:
    """The CANDIDATES_INDEX values holding the volumes `claim` may bind."""
    m = claim["metadata"]
    return f"class:{claim_class(claim)}", f"claim:{m.get('namespace')}/{m['name']}"


def could_bind(claim: Obj, pv: Obj) -> bool:
    """A cheap first look: the volume's class, access modes and size suit the claim."""
    return volume_class(pv) == claim_class(claim) and \
        access_modes(claim) <= access_modes(pv) and \
        requested_storage(claim) <= volume_capacity(pv)


def _selector(claim: Obj) -> LabelSelector | None:
    sel = (claim.get("spec") or {}).get("selector")
    if sel is None:
        return None
    try:
        return LabelSelector.from_dict(sel)
    except ApiError:
        return LabelSelector.select_nothing()


def volume_mismatch(pv: Obj, claim: Obj) -> str | None:
    """Why `pv` cannot serve the claim that names it (Kubernetes' checkVolumeSatisfyClaim
    words), or None."""
    if volume_capacity(pv) < requested_storage(claim):
        return "requested PV is too small"
    if volume_class(pv) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode_mismatch(claim, pv):
        return "incompatible volumeMode"
    if not access_modes(claim) <= access_modes(pv):
        return "incompatible accessMode"
    return None


def find_best_match(claim: Obj, volumes: Iterable[Obj], *, delay_binding: bool = False,
                    node: tuple[Mapping[str, str], str] | None = None,
                    excluded: frozenset[str] | set[str] = frozenset()) -> Obj | None:
    """The volume this claim should bind (see the module docstring), or None. `node` is
    (labels, name) on the scheduler's path; `excluded` names volumes already chosen for
    other claims of the same pod."""
    wanted = access_modes(claim)
    groups: dict[frozenset[str], list[Obj]] = {}
    for pv in volumes:
        modes = access_modes(pv)
        if wanted <= modes:
            groups.setdefault(modes, []).append(pv)
    for modes in sorted(groups, key=lambda m: (len(m), sorted(m))):
        found = _match_in(claim, groups[modes], delay_binding, node, excluded)
        if found is not None:
            return found
    return None


def _match_in(claim: Obj, volumes: list[Obj], delay_binding: bool,
              node: tuple[Mapping[str, str], str] | None,
              excluded: frozenset[str] | set[str]) -> Obj | None:
    request = requested_storage(claim)
    wanted_class = claim_class(claim)
    selector = _selector(claim)
    best: tuple[Fraction, str, Obj] | None = None
    for pv in volumes:
        m = pv["metadata"]
        if m["name"] in excluded:
            continue
        bound_here = is_bound_to(pv, claim)
        if (pv.get("spec") or {}).get("claimRef") and not bound_here:
            continue
        capacity = volume_capacity(pv)
        if capacity < request or volume_mode_mismatch(claim, pv) or m.get("deletionTimestamp"):
            continue
        fits_node = node is None or node_affinity_matches(pv, node[0], node[1])
        if bound_here:
            return pv if fits_node else None  # pre-bound: this one or none
        if node is None and delay_binding:
            continue  # the scheduler chooses, knowing the node
        if (pv.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(m.get("labels") or {}):
            continue
        if volume_class(pv) != wanted_class or not fits_node:
            continue
        if best is None or (capacity, m["name"]) < best[:2]:
            best = (capacity, m["name"], pv)
    return best[2] if best is not None else None


def claim_ref(claim: Obj) -> Obj:
    """The reference a volume bound to this claim keeps (spec.claimRef)."""
    m = claim["metadata"]
    ref = {"kind": "PersistentVolumeClaim", "namespace": m.get("namespace"),
           "name": m["name"], "uid": m.get("uid"), "apiVersion": "v1"}
    if m.get("resourceVersion"):
        ref["resourceVersion"] = m["resourceVersion"]
    return ref
