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
- otherwise: what `pod_actions` decides (the kubelet's computePodActions: kill,
  create the sandbox, start init containers one at a time, then every container,
  restarts held in crash-loop back-off), carried out in that order.

Two pure functions do the thinking: `pod_actions.pod_actions` (what to do) and
`pod_status.compute_pod_status` (what to report); this module only does it. Status is
written (merge patch of `pods/status`) only when it differs from what the API has, or
from what this worker last wrote if the informer has not caught up yet.

What a node offers beyond the runtime is its `PodServices` (see `pod_services`): a real
node's set up volumes (FailedMount holds the pod in ContainerCreating), pull images
(ErrImagePull / ImagePullBackOff), resolve the environment (CreateContainerConfigError),
probe (readiness decides `ready`, a failed liveness probe restarts the container), run
preStop hooks and record the kubelet's Events; a simulated node's do nothing, so they cost
no extra API calls. A container the runtime refuses is `waiting` with the kubelet's
reason, told apart by the error's type (`ContainerConfigError`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pinnace.agent.env import EnvError, expand_command
from pinnace.agent.pod_actions import ContainerStart, CrashLoop, PodActions, pod_actions
from pinnace.agent.pod_services import PodServices, SimulatedServices
from pinnace.agent.pod_status import TERMINAL_PHASES, Observed, compute_pod_status
from pinnace.agent.runtime.interface import (
    CONTAINER_NAME,
    INIT_CONTAINER,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ContainerConfig,
    ContainerConfigError,
    ContainerState,
    ContainerStatus,
    PodSandboxConfig,
    PodSandboxStatus,
    PortMapping,
    Runtime,
    RuntimeError_,
)
from pinnace.agent.security import effective_security
from pinnace.agent.volumes import VolumeError
from pinnace.api import errors
from pinnace.api.quantity import int_value, milli_value
from pinnace.api.types import Obj
from pinnace.client.client import Client

log = logging.getLogger(__name__)


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
    services: PodServices = field(default_factory=SimulatedServices)
    allocatable: dict[str, str] | None = None  # for resourceFieldRef without a limit


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod: Obj | None = pod
        self.uid: str = pod["metadata"]["uid"]
        self.finished = False  # pod gone and runtime cleaned: drop this worker
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._timer: asyncio.TimerHandle | None = None
        self._backoff: dict[str, CrashLoop] = {}  # crash-loop back-off by container name
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
            await svc.pod_removed(self.uid)
            self.finished = True
            return
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate(pod)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            for c in await rt.list_containers(self.uid):
                if c.state is ContainerState.RUNNING:
                    await rt.stop_container(c.id, 0)
            svc.pod_stopped(self.uid)
            return
        if not await self._prepare_volumes(pod):
            observed = Observed(None, await self._containers(), self.ctx.host_ip, time.time(),
                                rt.name)
            await self._write_status(pod, compute_pod_status(pod, observed))
            return
        sandbox = next((s for s in await rt.list_pod_sandboxes(self.uid) if s.ready), None)
        by_name = await self._containers()
        actions = pod_actions(pod, Observed(sandbox, by_name, self.ctx.host_ip, time.time(),
                                            rt.name),
                              backoff=self._backoff, backoff_base=self.ctx.backoff_base,
                              backoff_max=self.ctx.backoff_max)
        waiting = dict(actions.waiting)
        sandbox = await self._act(pod, sandbox, by_name, actions, waiting)
        observed = Observed(sandbox, await self._containers(), self.ctx.host_ip, time.time(),
                            rt.name, waiting, ready=svc.ready, started=svc.started)
        for e in await svc.refresh_volumes(pod):
            await self._record(pod, "Warning", "FailedMount", e.message)
        if svc.refresh_period is not None:
            self.sync_after(svc.refresh_period)
        await self._write_status(pod, compute_pod_status(pod, observed))

    async def _act(self, pod: Obj, sandbox: PodSandboxStatus | None,
                   by_name: dict[str, list[ContainerStatus]], actions: PodActions,
                   waiting: dict[str, tuple[str, str]]) -> PodSandboxStatus | None:
        """Carry out `actions` in the kubelet's order: kill, sandbox, starts; the sandbox
        the pod's containers run in afterwards."""
        rt = self.ctx.runtime
        if actions.kill_pod:
            running = [c for attempts in by_name.values() for c in attempts
                       if c.state is not ContainerState.EXITED]
            await asyncio.gather(*(self._kill(pod, c, _grace(pod)) for c in running))
        if actions.create_sandbox:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            dns, dns_warnings = self.ctx.services.dns_config(pod)
            for reason, message in dns_warnings:
                await self._record(pod, "Warning", reason, message)
            sid = await rt.run_pod_sandbox(PodSandboxConfig(
                self.uid, meta["name"], meta.get("namespace", ""),
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
                port_mappings=_port_mappings(pod),
                host_network=bool(spec.get("hostNetwork")), dns=dns))
            sandbox = await rt.pod_sandbox_status(sid)
        for c, message in actions.kill:
            self.ctx.services.forget_container(c.id)
            await self._kill(pod, c, _grace(pod), message)
        self._backoff.update(actions.backoff)
        meta = pod["metadata"]
        for name in actions.backoff_started:
            await self._record(pod, "Warning", "BackOff",
                               f"Back-off restarting failed container {name} in pod "
                               f"{meta['name']}_{meta.get('namespace', '')}({self.uid})",
                               field_path=_field_path(pod, name))
        if actions.retry_in is not None:
            self.sync_after(actions.retry_in)
        if sandbox is None:
            return None
        for start in actions.start:
            if start.previous is not None:
                # keep the exit being replaced (it becomes lastState); drop older attempts
                for old in by_name.get(start.spec["name"]) or []:
                    if old.attempt < start.previous.attempt:
                        await rt.remove_container(old.id)
            await self._start(sandbox, pod, start, waiting)
        for c, status in actions.probe:
            await self._probe(pod, c, status, sandbox)
        return sandbox

    async def _prepare_volumes(self, pod: Obj) -> bool:
        """Set up the pod's volumes once; False (and a FailedMount Event) while they fail."""
        if self._volumes is not None:
            return True
        try:
            self._volumes = await self.ctx.services.setup_volumes(pod)
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
                     sandbox: PodSandboxStatus) -> None:
        svc = self.ctx.services
        failed = svc.probe(pod, c, latest, self._pod_ip(pod, sandbox))
        if failed is None:
            return
        await self._record(pod, "Normal", "Killing", failed,
                           field_path=_field_path(pod, c["name"]))
        svc.forget_container(latest.id)
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
        await self.ctx.services.record(pod, type_, reason, message, field_path=field_path)

    async def _containers(self) -> dict[str, list[ContainerStatus]]:
        by_name: dict[str, list[ContainerStatus]] = {}
        for c in await self.ctx.runtime.list_containers(self.uid):
            by_name.setdefault(c.name, []).append(c)
        for attempts in by_name.values():
            attempts.sort(key=lambda c: c.attempt, reverse=True)
        return by_name

    async def _start(self, sandbox: PodSandboxStatus, pod: Obj, start: ContainerStart,
                     waiting: dict[str, tuple[str, str]]) -> None:
        c = start.spec
        meta = pod["metadata"]
        name = c["name"]
        svc = self.ctx.services
        field_path = _field_path(pod, name)

        async def record(type_: str, reason: str, message: str) -> None:
            await self._record(pod, type_, reason, message, field_path=field_path)

        held = await svc.ensure_image(pod, c, record)
        if held is not None:
            waiting[name] = held
            self.sync_after(svc.image_retry_in(c.get("image", "")) or 1.0)
            return
        pod_ip = self._pod_ip(pod, sandbox)
        running = {**pod, "status": {**(pod.get("status") or {}), "podIP": pod_ip,
                                     "podIPs": [{"ip": pod_ip}], "hostIP": self.ctx.host_ip}}
        try:
            env = await svc.environment(running, c, allocatable=self.ctx.allocatable)
            mounts = svc.mounts(c, self._volumes)
        except (EnvError, VolumeError) as e:
            message = e.message if isinstance(e, VolumeError) else str(e)
            waiting[name] = ("CreateContainerConfigError", message)
            await record("Warning", "Failed", f"Error: {message}")
            self.sync_after(self.ctx.backoff_base)
            return
        limits = (c.get("resources") or {}).get("limits") or {}
        config = ContainerConfig(
            name, c.get("image", ""), start.attempt,
            expand_command(list(c.get("command") or []), env),
            expand_command(list(c.get("args") or []), env), env,
            labels={POD_UID: self.uid, POD_NAME: meta["name"],
                    POD_NAMESPACE: meta.get("namespace", ""), CONTAINER_NAME: name},
            annotations={INIT_CONTAINER: "true"} if start.init else {},
            mounts=mounts, working_dir=c.get("workingDir", ""),
            memory_limit=int_value(limits["memory"]) if "memory" in limits else None,
            cpu_limit_millis=milli_value(limits["cpu"]) if "cpu" in limits else None,
            stdin=bool(c.get("stdin")), stdin_once=bool(c.get("stdinOnce")),
            tty=bool(c.get("tty")),
            security=effective_security(pod, c))
        try:
            cid = await self.ctx.runtime.create_container(sandbox.id, config)
        except RuntimeError_ as e:
            # kubelet's split: a spec the node refuses to run vs. a runtime failure
            reason = ("CreateContainerConfigError" if isinstance(e, ContainerConfigError)
                      else "CreateContainerError")
            waiting[name] = (reason, str(e))
            await record("Warning", "Failed", f"Error: {e}")
            self.sync_after(self.ctx.backoff_base)
            return
        await record("Normal", "Created", f"Created container {name}")
        await self.ctx.runtime.start_container(cid)
        await record("Normal", "Started", f"Started container {name}")

    async def _terminate(self, pod: Obj) -> None:
        if self._deleting:
            return
        rt = self.ctx.runtime
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        self.ctx.services.pod_stopped(self.uid)
        running = [c for c in await rt.list_containers(self.uid)
                   if c.state is not ContainerState.EXITED]
        if running:
            await asyncio.gather(*(self._kill(pod, c, grace) for c in running))
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

    async def _kill(self, pod: Obj, c: ContainerStatus, grace: float,
                    message: str = "") -> None:
        """Stop one container as kubelet does: the Killing Event, the preStop hook (exec,
        httpGet, tcpSocket or sleep, within the grace period), then the stop signal and
        SIGKILL."""
        await self._record(pod, "Normal", "Killing", message or f"Stopping container {c.name}",
                           field_path=_field_path(pod, c.name))
        spec_c = next((x for x in _all_containers(pod) if x["name"] == c.name), {})
        started = time.monotonic()
        if (spec_c.get("lifecycle") or {}).get("preStop") and grace > 0:
            try:
                await asyncio.wait_for(
                    self.ctx.services.pre_stop(self.ctx.runtime, pod, spec_c, c, grace), grace)
            except Exception as e:  # a failed hook still ends in the stop, as in kubelet
                log.debug("preStop of %s: %s", c.name, e)
        await self.ctx.runtime.stop_container(c.id, max(grace - (time.monotonic() - started),
                                                        2.0 if grace else 0.0))

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
