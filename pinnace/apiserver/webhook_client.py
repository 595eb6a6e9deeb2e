"""The one way the API server calls webhooks: admission webhooks and custom resources'
conversion webhooks alike.

A webhook's `clientConfig` names either a `url` or a Service (`namespace`, `name`,
`path`, `port` — default 443); a Service is reached through a ready endpoint of its
EndpointSlices, read from the API server's own watch caches, while TLS still verifies
the name `<svc>.<ns>.svc`. The server certificate is verified against `caBundle`
(base64 PEM; the system's roots without one). Every call is one POST of a JSON body,
bounded as a whole by its timeout; anything but a 200 with a JSON body is a
`WebhookFailure` whose message is worded as Kubernetes words it
(`failed to call webhook: Post "<url>": …`), for the caller to turn into a Status.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp

from pinnace.api.types import Obj


class WebhookFailure(Exception):
    """The webhook could not be called or answered nonsense."""


def review_response(body: Any, api_version: str, kind: str, uid: str) -> Obj:
    """The `response` of a review a webhook answered (AdmissionReview, ConversionReview),
    checked as Kubernetes checks it: the review's group-version and kind, the uid."""
    if not isinstance(body, dict) or body.get("kind") != kind or \
            body.get("apiVersion") != api_version:
        raise WebhookFailure(f"expected webhook response of {api_version}, Kind={kind}")
    response = body.get("response")
    if not isinstance(response, dict):
        raise WebhookFailure("webhook response was absent")
    if response.get("uid") != uid:
        raise WebhookFailure(f'expected response.uid="{uid}", got "{response.get("uid")}"')
    return response


class WebhookClient:
    def __init__(self, registry: Any) -> None:
        # the ObjectRegistry: its watch caches hold the Services and EndpointSlices
        self._registry = registry
        kinds = registry.kinds
        self._services = kinds.by_kind("", "v1", "Service")
        self._slices = kinds.by_kind("discovery.k8s.io", "v1", "EndpointSlice")
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, config: Obj, body: Obj, *, seconds: int) -> Any:
        """POST `body` to the webhook of `config` (a clientConfig) within `seconds`; its
        JSON answer."""
        url, server_name = self._resolve(config)
        # Kubernetes tells the webhook its deadline in the query
        url += ("&" if "?" in url else "?") + f"timeout={seconds}s"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                    url, json=body, ssl=self._ssl(config.get("caBundle") or ""),
                    server_hostname=server_name,
                    timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
                if resp.status != 200:
                    raise WebhookFailure(f"the server responded with status {resp.status}")
                return await resp.json(content_type=None)
        except TimeoutError:
            raise WebhookFailure(f'failed to call webhook: Post "{url}": context deadline '
                                 f'exceeded') from None
        except (aiohttp.ClientError, ValueError, ssl.SSLError, OSError) as e:
            raise WebhookFailure(f'failed to call webhook: Post "{url}": {e}') from None

    def _resolve(self, config: Obj) -> tuple[str, str | None]:
        """The URL to call and the TLS server name to verify."""
        if config.get("url"):
            return config["url"], None
        ref = config.get("service")
        if not ref:
            raise WebhookFailure("clientConfig has neither url nor service")
        namespace, name, port = ref.get("namespace"), ref.get("name"), ref.get("port") or 443
        host = f"{name}.{namespace}.svc"
        address, target = self._endpoint(namespace, name, port)
        path = ref.get("path") or "/"
        bracketed = f"[{address}]" if ":" in address else address
        return f"https://{bracketed}:{target}{path}", host

    def _endpoint(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """A ready endpoint of the Service's port, from the EndpointSlice cache."""
        svc = self._registry.caches[self._services].get(namespace, name)
        if svc is None:
            raise WebhookFailure(f'service "{namespace}/{name}" not found')
        port_name = next((p.get("name") or "" for p in svc["spec"].get("ports") or []
                          if p.get("port") == port), None)
        if port_name is None:
            raise WebhookFailure(f'service "{namespace}/{name}" has no port {port}')
        for s in self._registry.caches[self._slices].list(namespace):
            if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            target = next((p.get("port") for p in s.get("ports") or []
                           if (p.get("name") or "") == port_name), None)
            for ep in s.get("endpoints") or []:
                if target and (ep.get("conditions") or {}).get("ready", True) is not False:
                    return ep["addresses"][0], target
        raise WebhookFailure(f'service "{namespace}/{name}" has no ready endpoints')

    def _ssl(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._contexts.get(ca_bundle)
        if ctx is None:
            try:
                pem = base64.b64decode(ca_bundle).decode() if ca_bundle else None
                ctx = ssl.create_default_context(cadata=pem) if pem else \
                    ssl.create_default_context()
            except (ValueError, ssl.SSLError) as e:
                raise WebhookFailure(f"bad caBundle: {e}") from None
            self._contexts[ca_bundle] = ctx
        return ctx
