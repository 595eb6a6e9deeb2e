"""The node agent's HTTPS server: what the API server proxies `kubectl logs`, `exec` and
`port-forward` to, on the kubelet's routes.

    GET /containerLogs/{namespace}/{pod}/{container}?follow&previous&tailLines&…
        chunked text/plain, as `kubectl logs` prints it (see `logs`)
    GET|POST /exec/{namespace}/{pod}/{container}?command=…&stdin&stdout&stderr&tty
        a WebSocket speaking v5.channel.k8s.io or v4.channel.k8s.io: every binary
        message is one channel byte and data — 0 stdin, 1 stdout, 2 stderr, 3 the final
        Status (JSON), 4 terminal resize {"Width","Height"}, 255 (v5) close of a stream
    GET|POST /attach/{namespace}/{pod}/{container}?stdin&stdout&stderr&tty
        the same WebSocket protocols, relayed the same way, to the container's own process
        (see the runtime's `attach`); the Status is Success when the container exits,
        whatever its exit code (kubectl reads that from the pod), as the kubelet does
    GET|POST /portForward/{namespace}/{pod}
        handed to `pinnace.agent.portforward` with the pod's IP

Every request carries `Authorization: Bearer <token>` (the API server's); anything
else is answered 401. Pods come from `find_pod` (the agent's informer cache); their
containers from the runtime: the one with the highest attempt for that name, or the
one before it for `previous`. Errors are plain text with Kubernetes' wording; the API
server turns them into Status objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from pinnace.agent import logs
from pinnace.agent.runtime.interface import (
    CONTAINER_NAME,
    ContainerState,
    ContainerStatus,
    ExecSession,
    Runtime,
    RuntimeError_,
)
from pinnace.api.types import Obj

log = logging.getLogger(__name__)

FindPod = Callable[[str, str], "dict[str, Any] | None"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STREAM_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool


class StreamError(Exception):
    """A request the kubelet refuses, with the HTTP code and Kubernetes' message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _flag(query: Any, name: str) -> bool:
    return query.get(name, "") in _TRUE


def _int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise StreamError(400, f"invalid {name}: {value!r}") from None


def exit_status(code: int) -> dict[str, Any]:
    """The Status the v4/v5 protocols send on the error channel when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class KubeletServer:
    def __init__(self, runtime: Runtime, find_pod: FindPod, *, host: str, port: int,
                 tls_cert: Path, tls_key: Path, token: str) -> None:
        self.runtime = runtime
        self.find_pod = find_pod
        self.host = host
        self.port = port
        self._tls = (tls_cert, tls_key)
        self._token = token
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; with port 0 the chosen port is in `self.port` afterwards."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(*self._tls)
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        for method in ("GET", "POST"):
            r.add_route(method, "/exec/{namespace}/{pod}/{container}", self._exec)
            r.add_route(method, "/attach/{namespace}/{pod}/{container}", self._attach)
            r.add_route(method, "/portForward/{namespace}/{pod}", self._port_forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx,
                           reuse_address=True)
        await site.start()
        if self.port == 0:
            server: Any = site._server  # the port the OS chose
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
            return web.Response(status=401, text="Unauthorized")
        try:
            return await handler(request)
        except StreamError as e:
            return web.Response(status=e.code, text=str(e))

    # -- finding the container -----------------------------------------------------------

    def _pod(self, request: web.Request) -> dict[str, Any]:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.find_pod(ns, name)
        if pod is None:
            raise StreamError(404, f'pod "{name}" does not exist')
        return pod

    async def container(self, pod: dict[str, Any], name: str, *, previous: bool = False
                        ) -> ContainerStatus:
        """The runtime's container `name` of `pod`: the latest attempt, or the one before."""
        pod_name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        names = [c.get("name") for key in ("initContainers", "containers",
                                           "ephemeralContainers")
                 for c in spec.get(key) or []]
        if name not in names:
            raise StreamError(404, f'container "{name}" not found in pod "{pod_name}"')
        found = sorted((c for c in await self.runtime.list_containers(pod["metadata"]["uid"])
                        if c.labels.get(CONTAINER_NAME, c.name) == name),
                       key=lambda c: (c.attempt, c.created_at))
        if previous:
            if len(found) < 2:
                raise StreamError(400, f'previous terminated container "{name}" in pod '
                                  f'"{pod_name}" not found')
            return found[-2]
        if not found:
            raise StreamError(400, f'container "{name}" in pod "{pod_name}" is waiting to '
                              f'start: {_waiting_reason(pod, name)}')
        return found[-1]

    # -- logs ----------------------------------------------------------------------------

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        pod = self._pod(request)
        c = await self.container(pod, request.match_info["container"],
                                 previous=_flag(q, "previous"))
        since: float | None = None
        if (seconds := _int(q, "sinceSeconds")) is not None:
            since = time.time() - seconds
        elif q.get("sinceTime"):
            try:
                since = logs.parse_timestamp(q["sinceTime"])
            except ValueError as e:
                raise StreamError(400, str(e)) from None
        opts = logs.LogOptions(follow=_flag(q, "follow"), tail_lines=_int(q, "tailLines"),
                               since=since, timestamps=_flag(q, "timestamps"),
                               limit_bytes=_int(q, "limitBytes"))
        path = self.runtime.log_path(c.id)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def still_running() -> bool:
            if request.transport is None or request.transport.is_closing():
                return False  # the reader is gone: stop following
            try:
                state = (await self.runtime.container_status(c.id)).state
            except RuntimeError_:
                return False
            return state in (ContainerState.RUNNING, ContainerState.CREATED)

        if path is not None:
            with contextlib.suppress(ConnectionError):
                async for chunk in logs.read_log(path, opts, still_running):
                    await resp.write(chunk)
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    # -- exec ----------------------------------------------------------------------------

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        command = request.query.getall("command", [])
        _, c = await self._running_container(request)
        if not command:
            raise StreamError(400, "you must specify at least one command for the container")
        _require_websocket(request, "exec")
        tty, stdin = _flag(request.query, "tty"), _flag(request.query, "stdin")
        return await self._stream(request, self.runtime.exec(c.id, list(command), stdin=stdin,
                                                             tty=tty), stdin=stdin, tty=tty)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        pod, c = await self._running_container(request)
        _require_websocket(request, "attach")
        # a terminal or not was the container's spec's choice, not this request's
        tty = bool(_container_spec(pod, c.name).get("tty"))
        stdin = _flag(request.query, "stdin")
        return await self._stream(request, self.runtime.attach(c.id, stdin=stdin, tty=tty),
                                  stdin=stdin, tty=tty, status=_attach_status)

    async def _running_container(self, request: web.Request) -> tuple[Obj, ContainerStatus]:
        pod = self._pod(request)
        name = request.match_info["container"]
        c = await self.container(pod, name)
        if c.state is not ContainerState.RUNNING:
            raise StreamError(400, f'container not found ("{name}")')
        return pod, c

    async def _stream(self, request: web.Request, opening: Awaitable[ExecSession], *,
                      stdin: bool, tty: bool, **serve: Any) -> web.StreamResponse:
        """Open an exec or attach session, then relay it over the WebSocket."""
        try:
            session = await opening
        except RuntimeError_ as e:
            raise StreamError(500, str(e)) from None
        ws = web.WebSocketResponse(protocols=STREAM_PROTOCOLS)
        try:
            await ws.prepare(request)
        except BaseException:
            await session.kill()
            raise
        await _serve_exec(ws, session, stdin=stdin, stdout=_flag(request.query, "stdout"),
                          stderr=_flag(request.query, "stderr") and not tty, **serve)
        return ws

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        pod_ip = (pod.get("status") or {}).get("podIP")
        if not pod_ip:
            raise StreamError(400, f'pod "{pod["metadata"]["name"]}" has no IP address yet')
        from pinnace.agent import portforward  # written alongside; imported when used
        return await portforward.handle_port_forward(request, pod_ip)


def _require_websocket(request: web.Request, what: str) -> None:
    offered = [p.strip() for p in
               request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if not any(p in STREAM_PROTOCOLS for p in offered):
        raise StreamError(426, f"{what} needs a WebSocket with subprotocol "
                          f"{' or '.join(STREAM_PROTOCOLS)} (SPDY is not supported)")


def _attach_status(code: int) -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def _container_spec(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == name:
                return c
    return {}


async def _serve_exec(ws: web.WebSocketResponse, session: ExecSession, *, stdin: bool,
                      stdout: bool, stderr: bool,
                      status: Callable[[int], dict[str, Any]] = exit_status) -> None:
    """Relay the session over `ws` until the command ends (then send `status` of its exit
    code) or the client goes away (then kill the command; for attach: detach)."""
    v5 = ws.ws_protocol == "v5.channel.k8s.io"

    async def output() -> None:
        while (item := await session.read()) is not None:
            channel, data = item
            if (channel == STDOUT and stdout) or (channel == STDERR and stderr):
                await ws.send_bytes(bytes([channel]) + data)
        code = await session.wait()
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status(code)).encode())

    async def input_() -> None:
        async for msg in ws:
            # the official Python client sends stdin as text frames: same bytes
            raw = msg.data.encode() if msg.type is WSMsgType.TEXT else msg.data
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not raw:
                continue
            channel, data = raw[0], raw[1:]
            if channel == STDIN and stdin:
                await session.write_stdin(data)
            elif channel == RESIZE:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    size = json.loads(data)
                    session.resize(int(size["Width"]), int(size["Height"]))
            elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]):
                await session.close_stdin()

    out_task = asyncio.create_task(output())
    in_task = asyncio.create_task(input_())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        if not out_task.done():  # the client left first
            await session.kill()
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(out_task, 2.0)
    finally:
        for task in (out_task, in_task):
            task.cancel()
        for task in (out_task, in_task):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        await session.kill()  # no-op when the command has ended
        await ws.close()


def _waiting_reason(pod: dict[str, Any], name: str) -> str:
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == name:
                reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                if reason:
                    return reason
    return "ContainerCreating"
