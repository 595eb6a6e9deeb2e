"""configMap volumes: the configMap's data and binaryData as files (kubelet's configmap
plugin), on disk, through the atomic writer; read-only in every container."""

from __future__ import annotations

from typing import Any

from pinnace.agent.volumes import _sources
from pinnace.agent.volumes.atomic_writer import Payload

PLUGIN_DIR = "kubernetes.io~configmap"
MISSING_KEY = "configmap references non-existent config key: %s"


async def payload(client: Any, namespace: str, source: dict[str, Any],
                  default_mode: int | None = None) -> Payload:
    optional = bool(source.get("optional"))
    cm = await _sources.fetch(client, "ConfigMap", namespace, source.get("name", ""), optional)
    mode = default_mode if default_mode is not None else source.get("defaultMode", 0o644)
    return _sources.make_payload(_sources.config_map_data(cm), source.get("items"), mode,
                                 optional, MISSING_KEY)
