"""The kinds a server serves beyond the ones a client was built with: custom resources,
learnt from legacy discovery as client-go's discovery client learns them.

`GET /apis` lists every group and its versions; each group-version the client's kinds
registry does not know is read (`GET /apis/<g>/<v>`, an APIResourceList) and each
top-level resource in it becomes a `ResourceType` the client can list, watch, get and
delete through. A server without CRDs costs one request.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import errors
from pinnace.api.kinds import ResourceType
from pinnace.client.client import Client, error_from


async def _get(client: Client, path: str) -> Any:
    status, body = await client.transport.request("GET", path)
    if status >= 400:
        raise error_from(status, body)
    return body


async def discover_kinds(client: Client) -> list[ResourceType]:
    """Every resource type the server serves now that `client.kinds` does not hold."""
    known = client.kinds.group_versions()
    out: list[ResourceType] = []
    for group in (await _get(client, "/apis")).get("groups") or []:
        name = group.get("name", "")
        for entry in group.get("versions") or []:
            version = entry.get("version", "")
            if version in known.get(name, ()):
                continue
            try:
                listed = await _get(client, f"/apis/{name}/{version}")
            except errors.ApiError as e:
                if e.code == 404:  # gone between the two reads
                    continue
                raise
            out += [resource_type(name, version, r) for r in listed.get("resources") or []
                    if "/" not in r.get("name", "/")]
    return out


def resource_type(group: str, version: str, resource: dict[str, Any]) -> ResourceType:
    """A type from one APIResource entry of a discovery document."""
    return ResourceType(
        group=group, version=version, kind=resource.get("kind", ""),
        plural=resource["name"], namespaced=bool(resource.get("namespaced")),
        short_names=tuple(resource.get("shortNames") or ()),
        categories=tuple(resource.get("categories") or ()),
        verbs=tuple(resource.get("verbs") or ()),
        singular_name=resource.get("singularName") or "")
