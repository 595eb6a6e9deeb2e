"""The pods/log, pods/exec, pods/attach and pods/portforward subresources: the API server
proxies them to the kubelet of the pod's node, as Kubernetes does.

    client ──► API server: authn, RBAC, pod checks ──► https://<node InternalIP>:<kubelet port>
       GET  …/pods/P/log?…                 GET  /containerLogs/NS/P/C?…   chunked text, relayed
       GET  …/pods/P/exec?… (WebSocket)    GET  /exec/NS/P/C?…            WebSocket, relayed
       …/pods/P/portforward                /portForward/NS/P              see `portforward`

Before any byte goes to the node the pod is checked with Kubernetes' words: unknown pod
(404), no node yet (`pod x does not have a host assigned`), missing or ambiguous
container. The node's address is its `status.addresses` (InternalIP first) and port
`status.daemonEndpoints.kubeletEndpoint.Port`. The API server authenticates with the
kubelet's bearer token (`NodeProxy(kubelet_token=…)`) and does not verify the kubelet's
serving certificate — Kubernetes' default without `--kubelet-certificate-authority`.

Exec and attach are WebSockets only (v5/v4.channel.k8s.io, the subprotocol the client
offered is offered to the kubelet in turn); the connection to the kubelet is made first,
so a refusal reaches the client as an ordinary Status error rather than a broken
stream. A SPDY request (kubectl's fallback) gets that Status too, instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web

from pinnace.api import errors
from pinnace.apiserver.registry import ObjectRegistry

STREAM_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_ADDRESS_ORDER = ("InternalIP", "Hostname", "InternalDNS", "ExternalIP", "ExternalDNS")
_LOG_PARAMS = ("follow", "previous", "tailLines", "sinceSeconds", "sinceTime", "timestamps",
               "limitBytes")
_EXEC_PARAMS = ("stdin", "stdout", "stderr", "tty")
_CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class NodeProxy:
    """Serves the streaming pod subresources by proxying to kubelets. Put one in the
    application as `app[NODE_PROXY]`; `subresources.dispatch` finds it there."""

    def __init__(self, *, kubelet_token: str) -> None:
        self._headers = {"Authorization": f"Bearer {kubelet_token}"}

    async def serve(self, registry: ObjectRegistry, request: web.Request, namespace: str,
                    name: str, subresource: str) -> web.StreamResponse:
        pods = registry.kinds.by_kind("", "v1", "Pod")
        assert pods is not None
        pod = registry.get(pods, namespace, name)
        if subresource == "log":
            if request.method != "GET":
                raise errors.method_not_allowed()
            container = _container(pod, request.query.get("container", ""))
            base = self._kubelet_url(registry, pod)
            return await self._logs(request, f"{base}/containerLogs/{_path(namespace, name)}/"
                                             f"{quote(container, safe='')}")
        if subresource in ("exec", "attach"):
            if request.method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            container = _container(pod, request.query.get("container", ""))
            if subresource == "exec" and not request.query.getall("command", []):
                raise errors.bad_request("you must specify at least one command for the "
                                         "container")
            base = self._kubelet_url(registry, pod)
            kubelet_path = "exec" if subresource == "exec" else "attach"
            return await self._stream(request, f"{base}/{kubelet_path}/"
                                               f"{_path(namespace, name)}/"
                                               f"{quote(container, safe='')}")
        if subresource == "portforward":
            base = self._kubelet_url(registry, pod)
            return await self._port_forward(request,
                                            f"{base}/portForward/{_path(namespace, name)}")
        raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                              "resource")

    def _kubelet_url(self, registry: ObjectRegistry, pod: dict[str, Any]) -> str:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host "
                                     "assigned")
        nodes = registry.kinds.by_kind("", "v1", "Node")
        assert nodes is not None
        node = registry.get(nodes, None, node_name)
        status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = next((addresses[t] for t in _ADDRESS_ORDER if addresses.get(t)), None)
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not host or not port:
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f'node "{node_name}" has no kubelet endpoint: it serves no '
                                  "logs, exec or port-forward")
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"

    # -- logs ----------------------------------------------------------------------------

    async def _logs(self, request: web.Request, url: str) -> web.StreamResponse:
        params = [(k, v) for k in _LOG_PARAMS for v in request.query.getall(k, [])]
        async with aiohttp.ClientSession(timeout=_CONNECT_TIMEOUT) as session:
            try:
                upstream = await session.get(url, params=params, headers=self._headers,
                                             ssl=False)
            except (aiohttp.ClientError, OSError) as e:
                raise _dial_error(e) from None
            async with upstream:
                if upstream.status != 200:
                    raise await _upstream_error(upstream)
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    while True:
                        chunk = await _read_while_connected(request, upstream)
                        if not chunk:
                            break
                        await resp.write(chunk)
                    await resp.write_eof()
                return resp

    # -- exec / attach -------------------------------------------------------------------

    async def _stream(self, request: web.Request, url: str) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "")
                   .split(",") if p.strip()]
        protocols = [p for p in offered if p in STREAM_PROTOCOLS]
        params = [(k, v) for k in ("command", *_EXEC_PARAMS)
                  for v in request.query.getall(k, [])]
        async with aiohttp.ClientSession(timeout=_CONNECT_TIMEOUT) as session:
            if request.headers.get("Upgrade", "").lower() != "websocket" or not protocols:
                # kubectl's SPDY fallback: say why the node refuses, else why we do
                raise await self._refusal(session, url, params, errors.bad_request(
                    "streaming needs a WebSocket with subprotocol v5.channel.k8s.io or "
                    "v4.channel.k8s.io; SPDY is not supported by this server (use kubectl "
                    "1.30 or newer)"))
            try:
                upstream = await session.ws_connect(
                    url, params=params, headers=self._headers, ssl=False,
                    protocols=protocols, max_msg_size=0, autoping=True)
            except aiohttp.WSServerHandshakeError as e:
                raise await self._refusal(session, url, params, _status_for(
                    e.status, f"error upgrading connection to the node: {e.message}")
                    ) from None
            except (aiohttp.ClientError, OSError) as e:
                raise _dial_error(e) from None
            async with upstream:
                ws = web.WebSocketResponse(protocols=(upstream.protocol,)
                                           if upstream.protocol else protocols,
                                           max_msg_size=0)
                await ws.prepare(request)
                await _relay(ws, upstream)
                return ws

    async def _refusal(self, session: aiohttp.ClientSession, url: str,
                       params: list[tuple[str, str]], otherwise: errors.ApiError
                       ) -> errors.ApiError:
        """The kubelet's words for why it refuses this stream (aiohttp drops the body of a
        non-101 answer): ask it with a plain GET, which it checks (pod, container, command)
        before it answers 426 for the missing upgrade, and which starts nothing."""
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(url, params=params, headers=self._headers,
                                   ssl=False) as resp:
                if resp.status >= 400 and resp.status != 426:
                    return await _upstream_error(resp)
        return otherwise

    # -- port-forward --------------------------------------------------------------------

    async def _port_forward(self, request: web.Request, url: str) -> web.StreamResponse:
        from pinnace.apiserver import portforward  # written alongside; imported when used

        async with aiohttp.ClientSession(timeout=_CONNECT_TIMEOUT) as session:
            async def dial(port: int) -> Any:
                return await portforward.dial_kubelet(session, url, self._headers, False, port)
            return await portforward.serve_port_forward(request, dial)


NODE_PROXY = web.AppKey("node_proxy", NodeProxy)


async def serve(registry: ObjectRegistry, request: web.Request, namespace: str, name: str,
                subresource: str) -> web.StreamResponse:
    """The streaming subresource through the application's `NodeProxy`."""
    proxy = request.app.get(NODE_PROXY)
    if proxy is None:
        raise errors.ApiError(503, "ServiceUnavailable", "the API server has no credentials "
                              "for kubelets: pods/" + subresource + " is unavailable")
    return await proxy.serve(registry, request, namespace, name, subresource)


def _path(namespace: str, name: str) -> str:
    return f"{quote(namespace, safe='')}/{quote(name, safe='')}"


def _container(pod: dict[str, Any], container: str) -> str:
    """The container a request means, checked as Kubernetes' validateContainer does."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    if container:
        every = [c.get("name") for key in ("containers", "initContainers",
                                           "ephemeralContainers")
                 for c in spec.get(key) or []]
        if container not in every:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return containers[0]["name"]
    if not containers:
        raise errors.bad_request(f"pod {name} does not have a container")
    names = [c.get("name") for key in ("initContainers", "containers", "ephemeralContainers")
             for c in spec.get(key) or []]
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one "
                             f"of: [{' '.join(names)}]")


async def _read_while_connected(request: web.Request, upstream: aiohttp.ClientResponse
                                ) -> bytes:
    """The next chunk from the kubelet, or b"" once the client has gone (a followed log
    may stay silent for long; the kubelet stops when the connection closes)."""
    read = asyncio.ensure_future(upstream.content.readany())
    while True:
        done, _ = await asyncio.wait({read}, timeout=1.0)
        if done:
            return read.result()
        if request.transport is None or request.transport.is_closing():
            read.cancel()
            return b""


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse
                 ) -> None:
    """Copy messages both ways until either side closes; then close the other."""

    async def copy(src: Any, dst: Any) -> None:
        async for msg in src:
            if msg.type is WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await dst.send_str(msg.data)

    tasks = [asyncio.create_task(copy(client, kubelet)),
             asyncio.create_task(copy(kubelet, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError,
                                     aiohttp.ClientError):
                await task
        await kubelet.close()
        await client.close()


async def _upstream_error(resp: aiohttp.ClientResponse) -> errors.ApiError:
    """A kubelet's refusal (plain text in Kubernetes' words) as a Status, like the API
    server's generic response checker."""
    text = (await resp.text(errors="replace")).strip()[:4096]
    return _status_for(resp.status, text)


def _status_for(code: int, text: str) -> errors.ApiError:
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and body.get("kind") == "Status":
            return errors.ApiError(code, body.get("reason", ""), body.get("message", text))
    reason = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(
        code, "InternalError")
    return errors.ApiError(code if code in (400, 401, 403, 404) else 500, reason, text)


def _dial_error(e: BaseException) -> errors.ApiError:
    return errors.ApiError(500, "InternalError", f"error dialing backend: {e}")
