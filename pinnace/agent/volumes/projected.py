"""projected volumes: configMap, secret, downwardAPI and serviceAccountToken sources
merged into one directory (kubelet's projected plugin), on tmpfs with a 0700 root (it
may hold secrets), through the atomic writer.

The projected `defaultMode` applies to every source's files unless an item sets a
mode. A serviceAccountToken source's file is a token for the pod from the node's
`TokenManager` (`token_manager.py`): requested once, then renewed by the periodic
refresh once 80 % of its lifetime has passed. clusterTrustBundle sources are left out.
"""

from __future__ import annotations

from typing import Any

from pinnace.agent.volumes import config_map, downward_api, secret
from pinnace.agent.volumes.atomic_writer import FileProjection, Payload
from pinnace.agent.volumes.downward_api import Allocatable
from pinnace.agent.volumes.errors import SetUpError
from pinnace.agent.volumes.token_manager import TokenManager
from pinnace.api.errors import ApiError

PLUGIN_DIR = "kubernetes.io~projected"
DEFAULT_TOKEN_EXPIRATION = 3600  # seconds, the API's default for a source without one


async def payload(client: Any, pod: dict[str, Any], source: dict[str, Any],
                  allocatable: Allocatable, tokens: TokenManager) -> Payload:
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
        elif src.get("serviceAccountToken") is not None:
            sat = src["serviceAccountToken"]
            try:
                token = await tokens.token(
                    pod, audience=sat.get("audience") or "",
                    expiration_seconds=sat.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION)
            except ApiError as e:
                raise SetUpError(f"failed to fetch token: {e.message}") from e
            out[sat.get("path") or "token"] = FileProjection(token.encode(), mode)
    return out
