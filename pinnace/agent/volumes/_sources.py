"""Reading a configMap or secret for a volume, with `optional` and `items` handled the
way the kubelet's configmap and secret plugins do (shared by those and `projected`)."""

from __future__ import annotations

import base64
from typing import Any

from pinnace.agent.volumes.atomic_writer import FileProjection, Payload
from pinnace.agent.volumes.errors import SetUpError
from pinnace.api.errors import ApiError
from pinnace.api.types import Obj


async def fetch(client: Any, kind: str, namespace: str, name: str, optional: bool
                ) -> Obj | None:
    """The object, or None when it is missing and optional. The not-found text is the
    kubelet's (its object cache names the resource in the singular)."""
    try:
        return await client.get(client.resource("v1", kind), name, namespace)
    except ApiError as e:
        if e.code == 404:
            if optional:
                return None
            raise SetUpError(f'{kind.lower()} "{name}" not found') from e
        raise SetUpError(str(e)) from e


def config_map_data(cm: Obj | None) -> dict[str, bytes]:
    if cm is None:
        return {}
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def secret_data(secret: Obj | None) -> dict[str, bytes]:
    if secret is None:
        return {}
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    # stringData is write-only on the API; a server that keeps it still means plain text
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def make_payload(data: dict[str, bytes], items: list[Obj] | None, default_mode: int,
                 optional: bool, missing_key: str) -> Payload:
    """All keys as files (mode defaultMode), or only `items` (key -> path, mode). A missing
    item key fails with `missing_key % key` unless the source is optional."""
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out: Payload = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise SetUpError(missing_key % key)
        mode = item.get("mode")
        out[item.get("path") or key] = FileProjection(data[key], default_mode
                                                      if mode is None else mode)
    return out
