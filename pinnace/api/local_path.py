"""The local-path storage contract, shared by its provisioner (controllers/local_path.py)
and the node agent that makes the volumes (agent/local_storage.py), which talk only
through the API: names, annotations and pure functions, no I/O.

- The built-in StorageClass `local-path` (k3s' name, so manifests written for k3s apply
  unchanged) names the provisioner `pinnace.io/local-path`. Not rancher's
  `rancher.io/local-path`: the volumes here behave differently (sizes enforced, online
  expansion) and an administrator may still install rancher's provisioner beside ours
  without two provisioners acting on the same claims.
- A node offers local-path storage by annotating its Node with the directory it keeps
  volumes in (`pinnace.io/local-path-dir`); the provisioner reads it to write the PV's
  path, since only the node's agent knows its data dir.
- A provisioned PV is named `pvc-<claim uid>`, annotated `pv.kubernetes.io/provisioned-by`,
  has a `local` source at `<dir>/pvc-<uid>_<namespace>_<claim>` (local-path-provisioner's
  layout) and node affinity `kubernetes.io/hostname In [<node>]`.
"""

from __future__ import annotations

from typing import Any

from pinnace.api.quantity import int_value
from pinnace.api.types import Obj

PROVISIONER = "pinnace.io/local-path"
CLASS_NAME = "local-path"
STORAGE_DIR_ANNOTATION = "pinnace.io/local-path-dir"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
HOSTNAME_LABEL = "kubernetes.io/hostname"
RESIZE_PENDING = "FileSystemResizePending"
RESIZE_PENDING_MESSAGE = ("Waiting for user to (re-)start a pod to finish file system resize "
                          "of volume on node.")


def default_class() -> Obj:
    """The StorageClass installed at startup (k3s' local-path, with expansion allowed)."""
    return {"metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS: "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True}


def volume_dir_name(pv_name: str, namespace: str, claim_name: str) -> str:
    return f"{pv_name}_{namespace}_{claim_name}"


def is_local_path(pv: Obj) -> bool:
    return ((pv.get("metadata") or {}).get("annotations") or {}).get(PROVISIONED_BY) == \
        PROVISIONER and bool((pv.get("spec") or {}).get("local"))


def pv_node(pv: Obj) -> str | None:
    """The one node a local-path PV's required node affinity names."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
             ).get("nodeSelectorTerms") or []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == HOSTNAME_LABEL and expr.get("operator") == "In" and \
                    len(expr.get("values") or []) == 1:
                return str(expr["values"][0])
    return None


def storage_bytes(obj_with_storage: Any) -> int | None:
    """`storage` of a capacity or requests map, in bytes (None when absent or invalid)."""
    value = (obj_with_storage or {}).get("storage")
    if value is None:
        return None
    try:
        return int_value(value)
    except (ValueError, ArithmeticError):
        return None


def claim_request(claim: Obj) -> int | None:
    return storage_bytes(((claim.get("spec") or {}).get("resources") or {}).get("requests"))


def pv_capacity(pv: Obj) -> int | None:
    return storage_bytes((pv.get("spec") or {}).get("capacity"))
