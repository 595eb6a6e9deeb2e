"""The API client components use: verbs on resources, objects as plain dicts.

    client = Client(HttpTransport.from_kubeconfig(path))
    pods = client.resource("v1", "Pod")
    pod = await client.get(pods, "web-0", namespace="default")
    async for ev_type, obj in client.watch(pods, resource_version=rv): ...

Failures raise `ApiError` rebuilt from the server's Status, so a controller
tells NotFound (404), Conflict/AlreadyExists (409) and Gone (410) apart by code
and reason, exactly as the server sent them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pinnace.api import errors
from pinnace.api.kinds import REGISTRY, Registry, ResourceType
from pinnace.client.transport import Transport

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


def error_from(status: int, body: Any) -> errors.ApiError:
    if isinstance(body, dict) and body.get("kind") == "Status":
        details = body.get("details") or {}
        causes = [errors.Cause(c.get("field", ""), c.get("message", ""),
                               c.get("reason", "")) for c in details.get("causes") or []]
        return errors.ApiError(int(body.get("code") or status), body.get("reason", ""),
                               body.get("message", ""), causes=causes,
                               name=details.get("name", ""), kind=details.get("kind", ""),
                               group=details.get("group", ""))
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    return errors.ApiError(status, "Unknown", message or f"HTTP {status}")


class Client:
    def __init__(self, transport: Transport, *, kinds: Registry = REGISTRY,
                 field_manager: str = "pinnace") -> None:
        self.transport = transport
        self.kinds = kinds
        self.field_manager = field_manager

    def resource(self, api_version: str, kind: str) -> ResourceType:
        rt = self.kinds.by_api_version(api_version, kind)
        if rt is None:
            raise LookupError(f"unknown kind {kind} in {api_version}")
        return rt

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    body: Any = None, content_type: str = "application/json") -> Any:
        status, out = await self.transport.request(method, path, params=params, body=body,
                                                   content_type=content_type)
        if status >= 400:
            raise error_from(status, out)
        return out

    @staticmethod
    def _ns(rt: ResourceType, namespace: str | None, obj: dict[str, Any] | None = None
            ) -> str | None:
        if not rt.namespaced:
            return None
        ns = namespace or ((obj or {}).get("metadata") or {}).get("namespace")
        if not ns:
            raise ValueError(f"{rt.kind} is namespaced: a namespace is required")
        return ns

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None
                  ) -> dict[str, Any]:
        return await self._call("GET", rt.url_path(self._ns(rt, namespace), name))

    async def list(self, rt: ResourceType, namespace: str | None = None, *,
                   label_selector: str = "", field_selector: str = "",
                   limit: int = 0, continue_token: str = "") -> dict[str, Any]:
        params = _selector_params(label_selector, field_selector)
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        ns = namespace if rt.namespaced else None
        return await self._call("GET", rt.url_path(ns), params=params)

    async def create(self, rt: ResourceType, obj: dict[str, Any],
                     namespace: str | None = None) -> dict[str, Any]:
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        return await self._call("POST", rt.url_path(self._ns(rt, namespace, obj)), body=body,
                                params={"fieldManager": self.field_manager})

    async def update(self, rt: ResourceType, obj: dict[str, Any], *,
                     subresource: str = "") -> dict[str, Any]:
        m = obj["metadata"]
        path = rt.url_path(self._ns(rt, None, obj), m["name"])
        if subresource:
            path += f"/{subresource}"
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        return await self._call("PUT", path, body=body,
                                params={"fieldManager": self.field_manager})

    async def update_status(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(rt, obj, subresource="status")

    async def patch(self, rt: ResourceType, name: str, patch: Any, *,
                    namespace: str | None = None, patch_type: str = "merge",
                    subresource: str = "", force: bool = False) -> dict[str, Any]:
        path = rt.url_path(self._ns(rt, namespace), name)
        if subresource:
            path += f"/{subresource}"
        params = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        return await self._call("PATCH", path, body=patch, params=params,
                                content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = preconditions
        return await self._call("DELETE", rt.url_path(self._ns(rt, namespace), name), body=body)

    async def post_subresource(self, rt: ResourceType, name: str, subresource: str,
                               body: dict[str, Any], namespace: str | None = None) -> Any:
        path = rt.url_path(self._ns(rt, namespace), name) + f"/{subresource}"
        return await self._call("POST", path, body=body)

    async def watch(self, rt: ResourceType, namespace: str | None = None, *,
                    resource_version: str = "", label_selector: str = "",
                    field_selector: str = "", timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) events; ERROR events are raised as ApiError (410: relist)."""
        params = _selector_params(label_selector, field_selector)
        params.update({"watch": "true", "timeoutSeconds": str(timeout_seconds)})
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        ns = namespace if rt.namespaced else None
        async for status, event in self.transport.stream(rt.url_path(ns), params):
            if status != 200:
                raise error_from(status, event)
            if event.get("type") == "ERROR":
                raise error_from(int(event["object"].get("code") or 500), event["object"])
            yield event["type"], event["object"]

    async def close(self) -> None:
        await self.transport.close()


def _selector_params(label_selector: str, field_selector: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params
