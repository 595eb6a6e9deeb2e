"""One worker per pod bound to the node: make the runtime match the pod's spec, report status.

Design: a worker holds the latest pod object and no task while idle. `update`
(from the pod informer), a container event from the runtime, or a backoff timer
(`loop.call_later`) asks for a sync; a sync runs as a short task, and a request
arriving during a sync runs one more afterwards, so syncs of one pod never
overlap and events are never lost. A sync reads the runtime's containers for
the pod (stateless: a restarted agent resumes) and then:

- pod gone from the API: stop and remove its sandbox and containers;
- deletionTimestamp set: stop the containers, report the final status (a
  terminal phase, as kubelet does), then DELETE with gracePeriodSeconds=0 so the
  API server removes it;
- terminal phase: nothing more runs;
- otherwise: a sandbox (the pod IP), init containers one at a time in order,
  then every container; exited containers restart per restartPolicy with
  crash-loop backoff (immediately the first time, then `backoff_base` doubling to
  `backoff_max`), shown meanwhile as `waiting: CrashLoopBackOff`.

Status is `pod_status.compute_pod_status` and is written (merge patch of
`pods/status`) only when it differs from what the API has, or from what this
worker last wrote if the informer has not caught up yet.

A real node adds `NodeServices`: before the sandbox, the pod's volumes are set up
(FailedMount holds the pod in ContainerCreating); before each container, its image
is made present (ErrImagePull / ImagePullBackOff) and its environment resolved
(CreateContainerConfigError); running containers get probes (readiness decides
`ready`, a failed liveness probe restarts the container); configMap/secret volumes
are refreshed every `refresh_period`; and the kubelet's Events are recorded.
Simulated nodes go without, so they cost no extra API calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pinnace.agent.env import EnvError, container_env, expand_command, service_env
from pinnace.agent.image_manager import ImageManager
from pinnace.agent.pod_status import TERMINAL_PHASES, Observed, compute_pod_status
from pinnace.agent.probes import ProbeManager, run_probe
from pinnace.agent.runtime.interface import (
    CONTAINER_NAME,
    INIT_CONTAINER,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    Mount,
    PodSandboxConfig,
    PodSandboxStatus,
    PortMapping,
    Runtime,
    RuntimeError_,
)
from pinnace.agent.security import effective_security
from pinnace.agent.volumes import VolumeError, VolumeManager
from pinnace.api import errors
from pinnace.api.quantity import int_value, milli_value
from pinnace.client.client import Client
from pinnace.client.events import record_event

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class NodeServices:
    """What a real node's pod workers use beyond the runtime."""
    images: ImageManager
    volumes: VolumeManager
    probes: ProbeManager
    refresh_period: float = 10.0  # configMap/secret volumes re-read this often


@dataclass
class NodeContext:
    """What every pod worker of one node shares."""
    client: Client
    runtime: Runtime
    node_name: str
    host_ip: str
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    pods: Any = field(default=None)  # the pods ResourceType, filled in by PodWorkers
    services: NodeServices | None = None
    allocatable: dict[str, str] | None = None  # for resourceFieldRef without a limit


@dataclass
class _Backoff:
    steps: int = 0
    seen_finish: float = 0.0  # finishedAt of the exit this entry accounted for
    until: float = 0.0


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod: Obj | None = pod
        self.uid: str = pod["metadata"]["uid"]
        self.finished = False  # pod gone and runtime cleaned: drop this worker
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._timer: asyncio.TimerHandle | None = None
        self._backoff: dict[str, _Backoff] = {}
        self._written: tuple[int, Obj] | None = None  # (resourceVersion, status) we wrote
        self._deleting = False
        self._volumes: Any = None  # what the volume manager set up, once it has
        self._volume_error = ""

    # -- triggers ------------------------------------------------------------------------

    def update(self, pod: Obj | None) -> None:
        """The informer's latest pod, or None once it is gone from the API."""
        self.pod = pod
        self.request_sync()

    def request_sync(self) -> None:
        if self._task is not None:
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    def sync_after(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.request_sync()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self._sync()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # transient (API or runtime): try again soon
                    log.debug("pod worker %s: %s", self.uid, e, exc_info=True)
                    self.sync_after(1.0)
                if not self._again:
                    return
        finally:
            self._task = None

    # -- the sync ------------------------------------------------------------------------

    async def _sync(self) -> None:
        pod = self.pod
        rt = self.ctx.runtime
        svc = self.ctx.services
        if pod is None:
            for sb in await rt.list_pod_sandboxes(self.uid):
                await rt.remove_pod_sandbox(sb.id)
            for c in await rt.list_containers(self.uid):
                await rt.remove_container(c.id)
            if svc is not None:
                svc.probes.forget(self.uid)
                await svc.volumes.teardown(self.uid)
            self.finished = True
            return
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if meta.get("deletionTimestamp"):
            await self._terminate(pod)
            return
        status = pod.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            for c in await rt.list_containers(self.uid):
                if c.state is ContainerState.RUNNING:
                    await rt.stop_container(c.id, 0)
            if svc is not None:
                svc.probes.forget(self.uid)
            return
        if svc is not None and not await self._prepare_volumes(pod, svc):
            observed = Observed(None, await self._containers(), self.ctx.host_ip, time.time(),
                                rt.name)
            await self._write_status(pod, compute_pod_status(pod, observed))
            return
        sandbox = next((s for s in await rt.list_pod_sandboxes(self.uid) if s.ready), None)
        if sandbox is None:
            sid = await rt.run_pod_sandbox(PodSandboxConfig(
                self.uid, meta["name"], meta.get("namespace", ""),
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
                port_mappings=_port_mappings(pod),
                host_network=bool(spec.get("hostNetwork"))))
            sandbox = await rt.pod_sandbox_status(sid)
        by_name = await self._containers()
        waiting: dict[str, tuple[str, str]] = {}
        policy = spec.get("restartPolicy", "Always")
        init_ok = True
        for c in spec.get("initContainers") or []:
            latest = (by_name.get(c["name"]) or [None])[0]
            sidecar = c.get("restartPolicy") == "Always"
            if latest is None:
                await self._start(sandbox, pod, c, 0, waiting, init=not sidecar)
            elif latest.state is ContainerState.EXITED and (sidecar or latest.exit_code != 0):
                if sidecar or policy != "Never":
                    await self._restart(sandbox, pod, c, latest, waiting, init=not sidecar)
            if latest is None or not (
                    (sidecar and latest.state is ContainerState.RUNNING) or
                    (not sidecar and latest.state is ContainerState.EXITED
                     and latest.exit_code == 0)):
                init_ok = False
                break
        if init_ok:
            for c in spec.get("containers") or []:
                latest = (by_name.get(c["name"]) or [None])[0]
                if latest is None:
                    await self._start(sandbox, pod, c, 0, waiting)
                elif latest.state is ContainerState.EXITED and (
                        policy == "Always" or (policy == "OnFailure" and latest.exit_code)):
                    await self._restart(sandbox, pod, c, latest, waiting)
                elif latest.state is ContainerState.RUNNING and svc is not None:
                    await self._probe(pod, c, latest, sandbox, svc)
        by_name = await self._containers()
        observed = Observed(sandbox, by_name, self.ctx.host_ip, time.time(), rt.name, waiting)
        if svc is not None:
            observed.ready = svc.probes.ready
            observed.started = svc.probes.started
            for e in await svc.volumes.refresh(pod):
                await self._record(pod, "Warning", "FailedMount", e.message)
            self.sync_after(svc.refresh_period)
        await self._write_status(pod, compute_pod_status(pod, observed))

    async def _prepare_volumes(self, pod: Obj, svc: NodeServices) -> bool:
        """Set up the pod's volumes once; False (and a FailedMount Event) while they fail."""
        if self._volumes is not None:
            return True
        try:
            self._volumes = await svc.volumes.setup(pod)
        except VolumeError as e:
            message = e.message
            if message != self._volume_error:  # once per distinct failure, not every retry
                await self._record(pod, "Warning", "FailedMount", message)
            self._volume_error = message
            self.sync_after(2.0)
            return False
        self._volume_error = ""
        return True

    async def _probe(self, pod: Obj, c: Obj, latest: ContainerStatus,
                     sandbox: PodSandboxStatus, svc: NodeServices) -> None:
        svc.probes.ensure(pod, c, latest.id, self._pod_ip(pod, sandbox),
                          started_at=latest.started_at or None)
        failed = svc.probes.liveness_failed(latest.id)
        if failed is None:
            return
        await self._record(pod, "Normal", "Killing", failed,
                           field_path=_field_path(pod, c["name"]))
        svc.probes.forget_container(latest.id)
        await self.ctx.runtime.stop_container(latest.id, _grace(pod))
        self.request_sync()

    def _pod_ip(self, pod: Obj, sandbox: PodSandboxStatus) -> str:
        """The sandbox's IP; a hostNetwork pod's is the node's."""
        if (pod.get("spec") or {}).get("hostNetwork"):
            return self.ctx.host_ip
        return sandbox.ip

    async def record(self, type_: str, reason: str, message: str, container: str) -> None:
        """An Event about one of this pod's containers (probe results)."""
        if self.pod is not None:
            await self._record(self.pod, type_, reason, message,
                               field_path=_field_path(self.pod, container))

    async def _record(self, pod: Obj, type_: str, reason: str, message: str, *,
                      field_path: str = "") -> None:
        await record_event(self.ctx.client, {**pod, "apiVersion": "v1", "kind": "Pod"},
                           component="kubelet", type_=type_, reason=reason, message=message,
                           field_path=field_path, host=self.ctx.node_name)

    async def _containers(self) -> dict[str, list[ContainerStatus]]:
        by_name: dict[str, list[ContainerStatus]] = {}
        for c in await self.ctx.runtime.list_containers(self.uid):
            by_name.setdefault(c.name, []).append(c)
        for attempts in by_name.values():
            attempts.sort(key=lambda c: c.attempt, reverse=True)
        return by_name

    async def _start(self, sandbox: PodSandboxStatus, pod: Obj, c: Obj, attempt: int,
                     waiting: dict[str, tuple[str, str]], *, init: bool = False) -> None:
        meta = pod["metadata"]
        name = c["name"]
        env = {e["name"]: e.get("value", "") for e in c.get("env") or [] if "name" in e}
        command, args = list(c.get("command") or []), list(c.get("args") or [])
        mounts: list[Mount] = []
        svc = self.ctx.services
        field_path = _field_path(pod, name)

        async def record(type_: str, reason: str, message: str) -> None:
            await self._record(pod, type_, reason, message, field_path=field_path)

        if svc is not None:
            held = await svc.images.ensure(pod, c, record)
            if held is not None:
                waiting[name] = held
                self.sync_after(svc.images.retry_in(c.get("image", "")) or 1.0)
                return
            pod_ip = self._pod_ip(pod, sandbox)
            running = {**pod, "status": {**(pod.get("status") or {}), "podIP": pod_ip,
                                         "podIPs": [{"ip": pod_ip}],
                                         "hostIP": self.ctx.host_ip}}
            try:
                links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
                services = await service_env(self.ctx.client, meta.get("namespace", "default"),
                                             enable_service_links=links)
                env = await container_env(self.ctx.client, running, c, services=services,
                                          node_allocatable=self.ctx.allocatable)
                mounts = svc.volumes.mounts(pod, c, self._volumes)
            except (EnvError, VolumeError) as e:
                message = e.message if isinstance(e, VolumeError) else str(e)
                waiting[name] = ("CreateContainerConfigError", message)
                await record("Warning", "Failed", f"Error: {message}")
                self.sync_after(self.ctx.backoff_base)
                return
            command, args = expand_command(command, env), expand_command(args, env)
        limits = (c.get("resources") or {}).get("limits") or {}
        config = ContainerConfig(
            name, c.get("image", ""), attempt, command, args, env,
            labels={POD_UID: self.uid, POD_NAME: meta["name"],
                    POD_NAMESPACE: meta.get("namespace", ""), CONTAINER_NAME: name},
            annotations={INIT_CONTAINER: "true"} if init else {},
            mounts=mounts, working_dir=c.get("workingDir", ""),
            memory_limit=int_value(limits["memory"]) if "memory" in limits else None,
            cpu_limit_millis=milli_value(limits["cpu"]) if "cpu" in limits else None,
            stdin=bool(c.get("stdin")), stdin_once=bool(c.get("stdinOnce")),
            tty=bool(c.get("tty")),
            security=effective_security(pod, c))
        try:
            cid = await self.ctx.runtime.create_container(sandbox.id, config)
        except RuntimeError_ as e:
            if svc is None:
                raise
            # kubelet's split: a spec the node refuses to run vs. a runtime failure
            reason = ("CreateContainerConfigError" if "runAsNonRoot" in str(e)
                      else "CreateContainerError")
            waiting[name] = (reason, str(e))
            await record("Warning", "Failed", f"Error: {e}")
            self.sync_after(self.ctx.backoff_base)
            return
        if svc is not None:
            await record("Normal", "Created", f"Created container {name}")
        await self.ctx.runtime.start_container(cid)
        if svc is not None:
            await record("Normal", "Started", f"Started container {name}")

    async def _restart(self, sandbox: PodSandboxStatus, pod: Obj, c: Obj,
                       latest: ContainerStatus, waiting: dict[str, tuple[str, str]], *,
                       init: bool = False) -> None:
        name = c["name"]
        b = self._backoff.setdefault(name, _Backoff())
        if b.seen_finish != latest.finished_at:
            # a new exit: a container that ran long enough starts its backoff afresh
            if latest.finished_at - latest.started_at > 2 * self.ctx.backoff_max:
                b.steps = 0
            delay = 0.0 if b.steps == 0 else \
                min(self.ctx.backoff_base * 2 ** (b.steps - 1), self.ctx.backoff_max)
            b.steps += 1
            b.seen_finish = latest.finished_at
            b.until = latest.finished_at + delay
            if delay and self.ctx.services is not None:
                meta = pod["metadata"]
                await self._record(pod, "Warning", "BackOff",
                                   f"Back-off restarting failed container {name} in pod "
                                   f"{meta['name']}_{meta.get('namespace', '')}({self.uid})",
                                   field_path=_field_path(pod, name))
        remaining = b.until - time.time()
        if remaining > 0:
            meta = pod["metadata"]
            back_off = _go_duration(b.until - latest.finished_at)
            waiting[name] = ("CrashLoopBackOff", f"back-off {back_off} restarting failed "
                             f"container={name} pod={meta['name']}_"
                             f"{meta.get('namespace', '')}({self.uid})")
            self.sync_after(remaining)
            return
        # keep the exit being replaced (it becomes lastState); drop older attempts
        for old in await self.ctx.runtime.list_containers(self.uid):
            if old.name == name and old.attempt < latest.attempt:
                await self.ctx.runtime.remove_container(old.id)
        await self._start(sandbox, pod, c, latest.attempt + 1, waiting, init=init)

    async def _terminate(self, pod: Obj) -> None:
        if self._deleting:
            return
        rt = self.ctx.runtime
        grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
        svc = self.ctx.services
        if svc is not None:
            svc.probes.forget(self.uid)
        running = [c for c in await rt.list_containers(self.uid)
                   if c.state is not ContainerState.EXITED]
        if svc is not None and running:
            await asyncio.gather(*(self._kill(pod, c, float(grace)) for c in running))
        for c in running:
            if svc is None:
                await rt.stop_container(c.id, float(grace))
        sandboxes = await rt.list_pod_sandboxes(self.uid)
        for sb in sandboxes:
            await rt.stop_pod_sandbox(sb.id)
        if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            observed = Observed(sandboxes[0] if sandboxes else None, await self._containers(),
                                self.ctx.host_ip, time.time(), rt.name, terminating=True)
            await self._write_status(pod, compute_pod_status(pod, observed))
        try:
            await self.ctx.client.delete(self.ctx.pods, pod["metadata"]["name"],
                                         pod["metadata"]["namespace"], grace_period_seconds=0,
                                         preconditions={"uid": self.uid})
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise
        self._deleting = True

    async def _kill(self, pod: Obj, c: ContainerStatus, grace: float) -> None:
        """Stop one container as kubelet does: the Killing Event, the preStop hook (exec,
        httpGet, tcpSocket or sleep, within the grace period), then the stop signal and
        SIGKILL."""
        await self._record(pod, "Normal", "Killing", f"Stopping container {c.name}",
                           field_path=_field_path(pod, c.name))
        spec_c = next((x for x in _all_containers(pod) if x["name"] == c.name), {})
        hook = ((spec_c.get("lifecycle") or {}).get("preStop") or {})
        started = time.monotonic()
        if hook and grace > 0:
            try:
                await asyncio.wait_for(self._run_hook(pod, spec_c, hook, c, grace), grace)
            except Exception as e:  # a failed hook still ends in the stop, as in kubelet
                log.debug("preStop of %s: %s", c.name, e)
        await self.ctx.runtime.stop_container(c.id, max(grace - (time.monotonic() - started),
                                                        2.0 if grace else 0.0))

    async def _run_hook(self, pod: Obj, spec_c: Obj, hook: Obj, c: ContainerStatus,
                        grace: float) -> None:
        if "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
            return
        # exec, httpGet and tcpSocket handlers run as probes do, bounded by the grace period
        pod_ip = (pod.get("status") or {}).get("podIP", "")
        await run_probe(self.ctx.runtime, {**hook, "timeoutSeconds": max(int(grace), 1)},
                        spec_c, c.id, pod_ip)

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        current = pod.get("status") or {}
        rv = _rv(pod)
        if self._written is not None and rv <= self._written[0]:
            current = self._written[1]  # the informer has not seen our last write yet
        if status == current:
            return
        meta = pod["metadata"]
        try:
            out = await self.ctx.client.patch(self.ctx.pods, meta["name"], {"status": status},
                                              namespace=meta["namespace"],
                                              subresource="status")
        except errors.ApiError as e:
            if e.code == 404:
                return  # deleted meanwhile; the informer will tell
            raise
        self._written = (_rv(out), out.get("status") or {})


def _all_containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _port_mappings(pod: Obj) -> list[PortMapping]:
    return [PortMapping(int(p["containerPort"]), int(p["hostPort"]), p.get("protocol", "TCP"),
                        p.get("hostIP", ""))
            for c in _all_containers(pod) for p in c.get("ports") or [] if p.get("hostPort")]


def _field_path(pod: Obj, name: str) -> str:
    """How an Event names one container of the pod: `spec.containers{app}`."""
    inits = {c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []}
    return f"spec.initContainers{{{name}}}" if name in inits else f"spec.containers{{{name}}}"


def _grace(pod: Obj) -> float:
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def _go_duration(seconds: float) -> str:
    """The way Go prints a duration: 10s, 5m0s, 2.5s, 400ms."""
    if seconds >= 60:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s}s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{round(seconds, 3):g}s"


class PodWorkers:
    """The pod workers of one node, keyed by pod uid."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        ctx.pods = ctx.client.resource("v1", "Pod")
        self.workers: dict[str, PodWorker] = {}
        ctx.runtime.subscribe(self._container_event)

    def update(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = self.workers[uid] = PodWorker(self.ctx, pod)
            w.request_sync()
        else:
            w.update(pod)

    def remove(self, pod: Obj) -> None:
        w = self.workers.get(pod["metadata"]["uid"])
        if w is not None:
            w.update(None)
            self._reap_later(w)

    def _reap_later(self, w: PodWorker) -> None:
        # drop the worker once its cleanup sync has run
        def check() -> None:
            if w.finished:
                self.workers.pop(w.uid, None)
            elif w.pod is None:
                asyncio.get_running_loop().call_later(0.5, check)
        asyncio.get_running_loop().call_later(0.05, check)

    def _container_event(self, pod_uid: str) -> None:
        w = self.workers.get(pod_uid)
        if w is not None:
            w.request_sync()

    def poke(self, pod_uid: str) -> None:
        """Sync a pod now (a probe result changed)."""
        self._container_event(pod_uid)

    def reap(self, pod_uid: str) -> None:
        """Remove what the runtime holds of a pod the API no longer has."""
        if pod_uid in self.workers:
            return
        w = self.workers[pod_uid] = PodWorker(self.ctx, {"metadata": {"uid": pod_uid}})
        w.update(None)
        self._reap_later(w)

    def stop(self) -> None:
        for w in self.workers.values():
            w.cancel()
        self.workers.clear()
