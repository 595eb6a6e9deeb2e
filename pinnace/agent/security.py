"""A container's effective securityContext: the pod's, overridden field by field by the
container's, as the kubelet merges them (`securitycontext.DetermineEffectiveSecurityContext`)."""

from __future__ import annotations

from typing import Any

from pinnace.agent.runtime.interface import LinuxSecurity
from pinnace.api.types import Obj


def effective_security(pod: Obj, container: Obj) -> LinuxSecurity:
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    caps = sc.get("capabilities") or {}
    groups = [*(pod_sc.get("supplementalGroups") or [])]
    if pod_sc.get("fsGroup") is not None:  # kubelet adds fsGroup to every container's groups
        groups.append(pod_sc["fsGroup"])
    return LinuxSecurity(
        run_as_user=pick("runAsUser"), run_as_group=pick("runAsGroup"),
        run_as_non_root=bool(pick("runAsNonRoot")),
        supplemental_groups=tuple(int(g) for g in dict.fromkeys(groups)),
        privileged=bool(sc.get("privileged")),
        add_capabilities=tuple(caps.get("add") or ()),
        drop_capabilities=tuple(caps.get("drop") or ()),
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        # allowPrivilegeEscalation defaults to true; false sets no_new_privs
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False)
