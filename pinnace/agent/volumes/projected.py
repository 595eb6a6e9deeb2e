"""projected volumes: configMap, secret and downwardAPI sources merged into one
directory (kubelet's projected plugin), on tmpfs with a 0700 root (it may hold
secrets), through the atomic writer.

The projected `defaultMode` applies to every source's files unless an item sets a
mode. serviceAccountToken sources are left out (pinnace has no TokenRequest yet):
their files are not written and the rest of the volume is. clusterTrustBundle
sources are left out too.
"""

from __future__ import annotations

from typing import Any

from pinnace.agent.volumes import config_map, downward_api, secret
from pinnace.agent.volumes.atomic_writer import Payload
from pinnace.agent.volumes.downward_api import Allocatable

PLUGIN_DIR = "kubernetes.io~projected"


async def payload(client: Any, pod: dict[str, Any], source: dict[str, Any],
                  allocatable: Allocatable) -> Payload:
    namespace = pod["metadata"]["namespace"]
    mode = source.get("defaultMode", 0o644)
    out: Payload = {}
    for src in source.get("sources") or []:
        if src.get("configMap") is not None:
            out.update(await config_map.payload(client, namespace, src["configMap"], mode))
        elif src.get("secret") is not None:
            out.update(await secret.payload(client, namespace, src["secret"], mode,
                                            name_field="name"))
        elif src.get("downwardAPI") is not None:
            out.update(await downward_api.payload(pod, src["downwardAPI"], allocatable, mode))
    return out
