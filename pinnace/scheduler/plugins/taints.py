"""Whether a pod's tolerations cover a node's taints (shared by the taint plugins)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Kubernetes' Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True  # an empty key with Exists tolerates every taint
    return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: list[Obj], taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in tolerations)
