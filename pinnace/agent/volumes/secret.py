"""secret volumes: the secret's (base64-decoded) data as files, on a tmpfs of their own
whose root is 0700, so the bytes never touch a disk and only root on the host can
read them; through the atomic writer; read-only in every container."""

from __future__ import annotations

from typing import Any

from pinnace.agent.volumes import _sources
from pinnace.agent.volumes.atomic_writer import Payload

PLUGIN_DIR = "kubernetes.io~secret"
MISSING_KEY = "references non-existent secret key: %s"


async def payload(client: Any, namespace: str, source: dict[str, Any],
                  default_mode: int | None = None, *, name_field: str = "secretName"
                  ) -> Payload:
    optional = bool(source.get("optional"))
    secret = await _sources.fetch(client, "Secret", namespace, source.get(name_field, ""),
                                  optional)
    mode = default_mode if default_mode is not None else source.get("defaultMode", 0o644)
    return _sources.make_payload(_sources.secret_data(secret), source.get("items"), mode,
                                 optional, MISSING_KEY)
