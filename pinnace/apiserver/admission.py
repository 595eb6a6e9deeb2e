"""Mutating admission that Kubernetes enables by default and pinnace needs.

- DefaultTolerationSeconds: every pod tolerates `node.kubernetes.io/not-ready`
  and `node.kubernetes.io/unreachable` (NoExecute) for 300 s unless it says
  otherwise, so the node lifecycle controller evicts it five minutes after its
  node goes away. Applied by the Pod strategy's `admit_create`
  (`strategies/pods.py`).
- StorageObjectInUseProtection and DefaultStorageClass, for PersistentVolumes and
  claims, live with their strategies (`strategies/storage.py`).
- ServiceAccount (serviceAccountName, the kube-api-access-* token volume) is a plugin
  of the admission chain, first in it (`admission_service_account.py`).
"""

from __future__ import annotations

from typing import Any

DEFAULT_TOLERATION_SECONDS = 300
_NODE_PROBLEM_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _tolerates(tolerations: list[dict[str, Any]], key: str) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", "NoExecute"):
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") == key:
            return True
    return False


def default_toleration_seconds(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    tolerations = spec.get("tolerations") or []
    for key in _NODE_PROBLEM_TAINTS:
        if not _tolerates(tolerations, key):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    spec["tolerations"] = tolerations

