"""Liveness, readiness and startup probes, run and counted the way the kubelet does.

    pm = ProbeManager(runtime, on_change=lambda uid: ..., on_event=record)
    pm.ensure(pod, container_spec, container_id, pod_ip, started_at=status.started_at)
    pm.ready(cid), pm.started(cid), pm.liveness_failed(cid)   # read at every pod sync
    pm.forget_container(cid) / pm.forget(pod_uid); await pm.aclose()

Design: one `ProbeWorker` (an asyncio task that mostly sleeps) per probe of a running
container instance, keyed by container id, so a restarted container (new id) starts
from fresh counters. A container without probes is a dict entry and nothing else.

Each worker waits `initialDelaySeconds` from the container's start, then probes every
`periodSeconds`; liveness and readiness are not probed until the startup probe has
succeeded (the startup worker then ends and readiness is probed at once). Results feed
a `ThresholdCounter` (kubelet's worker.go): a run of `failureThreshold` failures or
`successThreshold` successes sets the result; a failed liveness or startup result puts
the worker on hold (the container will be killed and come back with a new id). Initial
results: readiness False, liveness True, startup unknown (not started). `on_change(uid)`
fires when a result changes; every failed probe fires `on_event(uid, "Unhealthy",
"<Kind> probe failed: <output>", "Warning", container)` ("errored" when the probe could not run;
its result is thrown away), and a redirect to another host `ProbeWarning`.

Handlers: exec (`runtime.exec_sync`, stdout+stderr as output, a timeout is a failure
`command "…" timed out`), httpGet (to `host` or the pod IP; httpHeaders and Host;
HTTPS unverified; 200 ≤ code < 400 succeeds; redirects followed to the same host only),
tcpSocket (connect). gRPC probes are not implemented: they report an error.
Error texts copy Go's (`dial tcp 10.0.0.5:80: connect: connection refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from pinnace.agent.env import expand
from pinnace.agent.runtime.interface import Runtime, RuntimeError_
from pinnace.api.types import Obj

log = logging.getLogger(__name__)

ChangeHandler = Callable[[str], Any]
"""Called with a pod uid when a probe result of one of its containers changed."""
EventHandler = Callable[[str, str, str, str, str], Any]
"""Called with (pod uid, reason, message, type, container name) for an event on the pod."""

MAX_OUTPUT = 10 * 1024  # the kubelet keeps this much of a probe's output or body
USER_AGENT = "kube-probe/1.32"
MAX_RETRIES = 3  # a probe that errors is tried again this many times in one round
_REDIRECTS = (301, 302, 303, 307, 308)


class Result(enum.Enum):
    SUCCESS = "success"
    WARNING = "warning"  # counts as success; reported as ProbeWarning
    FAILURE = "failure"
    UNKNOWN = "unknown"  # could not run: see Outcome.error


class ProbeKind(enum.Enum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"

    @property
    def field(self) -> str:
        return {"Liveness": "livenessProbe", "Readiness": "readinessProbe",
                "Startup": "startupProbe"}[self.value]


@dataclass(frozen=True)
class Outcome:
    result: Result
    output: str = ""
    error: str | None = None


# -- handlers -----------------------------------------------------------------------------

class ProbePortError(Exception):
    """A probe's port cannot be resolved (the probe errors)."""


def probe_port(port: int | str | None, container: Obj) -> int:
    """A probe's port: a number, a name from the container's ports, or a number as text."""
    if isinstance(port, str):
        named = [p for p in container.get("ports") or [] if p.get("name") == port]
        if named:
            number = int(named[0].get("containerPort", 0))
        else:
            try:
                number = int(port, 10)
            except ValueError:
                raise ProbePortError(f'strconv.Atoi: parsing "{port}": invalid syntax') from None
    elif isinstance(port, int) and not isinstance(port, bool):
        number = port
    else:
        raise ProbePortError(f"intOrString had no kind: {port!r}")
    if not 0 < number < 65536:
        raise ProbePortError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def exec_probe(runtime: Runtime, container_id: str, command: list[str],
                     time_limit: float) -> Outcome:
    """Run `command` in the container: exit 0 succeeds; output is stdout then stderr."""
    t0 = time.monotonic()
    try:
        code, out, err = await asyncio.wait_for(
            runtime.exec_sync(container_id, command, time_limit), time_limit + 2)
    except (TimeoutError, RuntimeError_) as e:
        if isinstance(e, TimeoutError) or time.monotonic() - t0 >= time_limit:
            return Outcome(Result.FAILURE, f"command {json.dumps(' '.join(command))} timed out")
        return Outcome(Result.UNKNOWN, error=str(e))
    output = (out + err)[:MAX_OUTPUT].decode("utf-8", errors="replace")
    return Outcome(Result.SUCCESS if code == 0 else Result.FAILURE, output)


async def tcp_probe(host: str, port: int, time_limit: float) -> Outcome:
    """Open (and close) a TCP connection."""
    address = _host_port(host, port)
    try:
        async with asyncio.timeout(time_limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(Result.FAILURE, f"dial tcp {address}: i/o timeout")
    except OSError as e:
        return Outcome(Result.FAILURE, f"dial tcp {address}: {_os_error(e)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(Result.SUCCESS)


def _os_error(e: OSError) -> str:
    if e.errno == errno.ECONNREFUSED:
        return "connect: connection refused"
    if e.strerror:
        return f"connect: {e.strerror[0].lower()}{e.strerror[1:]}"
    return str(e)


async def http_probe(url: str, headers: list[tuple[str, str]], time_limit: float
                     ) -> Outcome:
    """GET `url`: 200 ≤ status < 400 succeeds. Redirects are followed to the same host
    only; one to another host ends the probe as a success with a warning."""
    hdrs: CIMultiDict[str] = CIMultiDict(headers)
    hdrs.setdefault("User-Agent", USER_AGENT)
    hdrs.setdefault("Accept", "*/*")
    first = current = URL(url)
    try:
        async with asyncio.timeout(time_limit), aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, force_close=True),
                auto_decompress=False) as session:
            for hop in range(11):
                async with session.get(current, headers=hdrs, allow_redirects=False) as resp:
                    body = (await resp.content.read(MAX_OUTPUT)).decode("utf-8", "replace")
                    status, location = resp.status, resp.headers.get("Location")
                if status in _REDIRECTS and location:
                    target = current.join(URL(location))
                    if target.host == first.host:
                        if hop == 10:
                            return Outcome(Result.FAILURE,
                                           f'Get "{target}": stopped after 10 redirects')
                        current = target
                        continue
                    return Outcome(Result.WARNING,
                                   f"Probe terminated redirects, Response body: {body}")
                break
    except TimeoutError:
        return Outcome(Result.FAILURE, f'Get "{current}": context deadline exceeded '
                                       "(Client.Timeout exceeded while awaiting headers)")
    except aiohttp.ClientConnectorError as e:
        address = _host_port(current.host or "", current.port or 0)
        return Outcome(Result.FAILURE, f'Get "{current}": dial tcp {address}: '
                                       f"{_os_error(e.os_error)}")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return Outcome(Result.FAILURE, f'Get "{current}": {e}')
    if 200 <= status < 400:
        return Outcome(Result.SUCCESS, body)
    # like the kubelet, never put the body in the message (it may hold secrets)
    return Outcome(Result.FAILURE, f"HTTP probe failed with statuscode: {status}")


async def run_probe(runtime: Runtime, probe: Obj, container: Obj, container_id: str,
                    pod_ip: str) -> Outcome:
    """One probe round: the handler, tried again (up to 3 times) while it errors."""
    outcome = Outcome(Result.UNKNOWN, error="no attempt")
    for _ in range(MAX_RETRIES):
        outcome = await _run_once(runtime, probe, container, container_id, pod_ip)
        if outcome.error is None:
            break
    return outcome


async def _run_once(runtime: Runtime, probe: Obj, container: Obj, container_id: str,
                    pod_ip: str) -> Outcome:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if probe.get("exec") is not None:
            # like the kubelet: $(VAR) from the container's literal env values only
            static = {e["name"]: e.get("value") or "" for e in container.get("env") or []}
            command = [expand(a, static.get) for a in probe["exec"].get("command") or []]
            return await exec_probe(runtime, container_id, command, timeout)
        if (get := probe.get("httpGet")) is not None:
            port = probe_port(get.get("port"), container)
            host = get.get("host") or pod_ip
            path = get.get("path") or "/"
            path = path if path.startswith("/") else "/" + path
            scheme = (get.get("scheme") or "HTTP").lower()
            headers = [(h["name"], h.get("value", "")) for h in get.get("httpHeaders") or []]
            return await http_probe(f"{scheme}://{_host_port(host, port)}{path}", headers,
                                    timeout)
        if (sock := probe.get("tcpSocket")) is not None:
            port = probe_port(sock.get("port"), container)
            return await tcp_probe(sock.get("host") or pod_ip, port, timeout)
        if probe.get("grpc") is not None:
            return Outcome(Result.UNKNOWN, error="grpc probes are not supported by pinnace")
    except ProbePortError as e:
        return Outcome(Result.UNKNOWN, error=str(e))
    return Outcome(Result.UNKNOWN, error=f"missing probe handler for {container.get('name')}")


# -- counting -----------------------------------------------------------------------------

class ThresholdCounter:
    """The kubelet's result counting for one probe of one container instance.

    `value`: True/False once decided, None for a startup probe that has not succeeded
    yet. `observe()` returns True when `value` changed. After a failed liveness or
    startup result the counter is `on_hold`: the container is about to be restarted.
    """

    def __init__(self, kind: ProbeKind, *, success_threshold: int = 1,
                 failure_threshold: int = 3) -> None:
        self.kind = kind
        self.success_threshold = max(1, success_threshold)
        self.failure_threshold = max(1, failure_threshold)
        self.value: bool | None = {ProbeKind.READINESS: False, ProbeKind.LIVENESS: True,
                                   ProbeKind.STARTUP: None}[kind]
        self.last: bool | None = None
        self.run = 0
        self.on_hold = False

    def observe(self, success: bool) -> bool:
        if self.last is success:
            self.run += 1
        else:
            self.last, self.run = success, 1
        if self.run < (self.success_threshold if success else self.failure_threshold):
            return False  # below threshold: the result stands
        changed = self.value is not success
        self.value = success
        if not success and self.kind is not ProbeKind.READINESS:
            self.on_hold, self.run = True, 0
        return changed


# -- workers ------------------------------------------------------------------------------

@dataclass
class _Container:
    pod_uid: str
    name: str
    id: str
    pod: Obj
    spec: Obj
    pod_ip: str
    started_at: float
    workers: dict[ProbeKind, ProbeWorker] = field(default_factory=dict)

    def value(self, kind: ProbeKind) -> bool | None:
        worker = self.workers.get(kind)
        return None if worker is None else worker.counter.value

    @property
    def started(self) -> bool:
        return ProbeKind.STARTUP not in self.workers or self.value(ProbeKind.STARTUP) is True


class ProbeWorker:
    """Runs one probe of one container instance on the event loop until cancelled."""

    def __init__(self, manager: ProbeManager, container: _Container, kind: ProbeKind,
                 spec: Obj) -> None:
        self.manager = manager
        self.container = container
        self.kind = kind
        self.spec = spec
        self.counter = ThresholdCounter(
            kind, success_threshold=int(spec.get("successThreshold") or 1),
            failure_threshold=int(spec.get("failureThreshold") or 3))
        self.period = float(spec.get("periodSeconds") or 10)
        self._trigger = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"probe {kind.value} {container.id[:12]}")

    def trigger(self) -> None:
        """Probe now instead of at the next period."""
        self._trigger.set()

    async def _run(self) -> None:
        c = self.container
        delay = c.started_at + float(self.spec.get("initialDelaySeconds") or 0) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while await self._guarded_probe():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trigger.wait(), self.period)
            self._trigger.clear()

    async def _guarded_probe(self) -> bool:
        try:
            return await self._probe_once()
        except Exception:  # like the kubelet's recover(): one bad round never ends probing
            log.exception("%s probe of container %s", self.kind.value, self.container.id)
            return True

    async def _probe_once(self) -> bool:
        """One tick of the kubelet's doProbe; False ends the worker."""
        c = self.container
        if self.kind is ProbeKind.STARTUP and c.started:
            return False
        if self.kind is not ProbeKind.STARTUP and not c.started:
            return True  # gated by the startup probe
        if (c.pod.get("metadata") or {}).get("deletionTimestamp") and \
                self.kind is not ProbeKind.READINESS:
            self.counter.value = True  # a terminating pod's containers are not restarted
            return False
        outcome = await run_probe(self.manager.runtime, self.spec, c.spec, c.id, c.pod_ip)
        kind = self.kind.value
        if outcome.error is not None:  # the result is thrown away
            self.manager._event(c, "Unhealthy", f"{kind} probe errored: {outcome.error}")
            return True
        if outcome.result is Result.FAILURE:
            self.manager._event(c, "Unhealthy", f"{kind} probe failed: {outcome.output}")
        elif outcome.result is Result.WARNING:
            self.manager._event(c, "ProbeWarning", f"{kind} probe warning: {outcome.output}")
        if self.counter.observe(outcome.result is not Result.FAILURE):
            self.manager._changed(c, self.kind)
        return not self.counter.on_hold and not (
            self.kind is ProbeKind.STARTUP and self.counter.value)


class ProbeManager:
    """All probe workers of one node, keyed by container id."""

    def __init__(self, runtime: Runtime, on_change: ChangeHandler | None = None, *,
                 on_event: EventHandler | None = None) -> None:
        self.runtime = runtime
        self.on_change = on_change
        self.on_event = on_event
        self._containers: dict[str, _Container] = {}
        self._callbacks: set[asyncio.Task[Any]] = set()

    def ensure(self, pod: Obj, container: Obj, container_id: str, pod_ip: str, *,
               started_at: float | None = None) -> None:
        """Probe this running container instance (idempotent; call at every sync). A new
        id for the same container name replaces the old instance's workers.
        `started_at`: wall-clock start (ContainerStatus.started_at); default now."""
        known = self._containers.get(container_id)
        if known is not None:
            known.pod, known.spec = pod, container
            known.pod_ip = pod_ip or known.pod_ip
            return
        uid = pod["metadata"]["uid"]
        for old in [c.id for c in self._containers.values()
                    if c.pod_uid == uid and c.name == container["name"]]:
            self.forget_container(old)
        entry = _Container(uid, container["name"], container_id, pod, container, pod_ip,
                           started_at or time.time())
        self._containers[container_id] = entry
        for kind in ProbeKind:
            spec = container.get(kind.field)
            if spec:
                entry.workers[kind] = ProbeWorker(self, entry, kind, spec)

    def started(self, container_id: str) -> bool:
        """The container's `started`: its startup probe succeeded, or it has none."""
        c = self._containers.get(container_id)
        return c is None or c.started

    def ready(self, container_id: str) -> bool:
        """The container's `ready`: started, and its readiness probe succeeded (or none)."""
        c = self._containers.get(container_id)
        if c is None:
            return True
        return c.started and c.value(ProbeKind.READINESS) is not False

    def liveness_failed(self, container_id: str) -> str | None:
        """The kubelet's Killing message when a liveness or startup probe failed past its
        threshold (the container must be restarted), else None."""
        c = self._containers.get(container_id)
        if c is None:
            return None
        for kind, what in ((ProbeKind.LIVENESS, "liveness"), (ProbeKind.STARTUP, "startup")):
            if c.value(kind) is False:
                restarts = ((c.pod.get("spec") or {}).get("restartPolicy") != "Never"
                            or c.spec.get("restartPolicy") == "Always")
                return (f"Container {c.name} failed {what} probe"
                        + (", will be restarted" if restarts else ""))
        return None

    def forget_container(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is not None:
            for w in c.workers.values():
                w.task.cancel()

    def forget(self, pod_uid: str) -> None:
        for cid in [c.id for c in self._containers.values() if c.pod_uid == pod_uid]:
            self.forget_container(cid)

    def stop(self) -> None:
        """Cancel every worker (await `aclose()` to wait for them)."""
        for cid in list(self._containers):
            self.forget_container(cid)
        for t in self._callbacks:
            t.cancel()

    async def aclose(self) -> None:
        tasks = [w.task for c in self._containers.values() for w in c.workers.values()]
        tasks += list(self._callbacks)
        self.stop()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- from the workers

    def _changed(self, c: _Container, kind: ProbeKind) -> None:
        if kind is ProbeKind.STARTUP and c.started and ProbeKind.READINESS in c.workers:
            c.workers[ProbeKind.READINESS].trigger()  # readiness need not wait a period
        if self.on_change is not None:
            self._call(self.on_change, c.pod_uid)

    def _event(self, c: _Container, reason: str, message: str) -> None:
        if self.on_event is not None:
            self._call(self.on_event, c.pod_uid, reason, message, "Warning", c.name)

    def _call(self, handler: Callable[..., Any], *args: Any) -> None:
        try:
            result = handler(*args)
        except Exception:
            log.exception("probe callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._callbacks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("probe callback failed: %s", task.exception())
