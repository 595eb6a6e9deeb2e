"""What a pod sync must do, as a pure function of the pod and what the runtime shows.

`pod_actions(pod, observed, backoff=…)` is the kubelet's `computePodActions`: from the
spec, the pod's sandbox and the newest attempt of every container it answers

- whether to kill the pod (every container stopped) and create a sandbox: when the pod
  has no ready sandbox. A pod with restartPolicy Never whose containers ran already gets
  no new sandbox: its containers are only stopped, so it ends in a terminal phase;
- which running containers to kill and start again: a container whose image is no longer
  the spec's (the container field a pod update may change), whatever restartPolicy;
- which containers to start: init containers first, one at a time in order (a sidecar,
  an init container with restartPolicy Always, counts as done once it runs), then every
  container that never ran or exited and may restart (Always; OnFailure after a failure;
  a failed init container unless the pod's policy is Never). A container whose newest
  attempt ran in an older sandbox starts again in the new one; init containers then
  run again from the first, as the kubelet does when it recreates a sandbox;
- which restarts wait in crash-loop back-off (`waiting` CrashLoopBackOff with the
  kubelet's message) and for how long;
- which running containers to probe.

The back-off of one container is a `CrashLoop` entry (consecutive restarts, the exit it
accounted for, the time the restart may happen): an exit not seen before moves it on
(immediately the first time, then base doubling to max; a container that ran longer than
twice the max starts afresh), as the kubelet's backOff does. The entries are the worker's
state; this function returns the changed ones, and the worker keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pinnace.agent.pod_status import Observed
from pinnace.agent.runtime.interface import ContainerState, ContainerStatus
from pinnace.api.backoff import exponential_delay
from pinnace.api.timestamps import go_duration
from pinnace.api.types import Obj


@dataclass(frozen=True)
class CrashLoop:
    """The crash-loop back-off of one container of a pod."""
    restarts: int = 0  # exits counted so far (the next delay's exponent)
    seen_finish: float = 0.0  # finishedAt of the exit this entry accounted for
    until: float = 0.0  # when the container may start again (wall clock)
    delay: float = 0.0  # until - seen_finish, kept exact for the message


@dataclass(frozen=True)
class ContainerStart:
    spec: Obj  # the container of the pod's spec
    attempt: int  # the restart count it is created with
    previous: ContainerStatus | None = None  # the exit it replaces (kept as lastState)
    init: bool = False  # an init container that runs to completion (not a sidecar)


@dataclass
class PodActions:
    create_sandbox: bool = False
    kill_pod: bool = False  # stop every container of the pod (its sandbox is gone)
    kill: list[tuple[ContainerStatus, str]] = field(default_factory=list)  # and why
    start: list[ContainerStart] = field(default_factory=list)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (reason, msg)
    retry_in: float | None = None  # seconds until the first held-back restart is due
    backoff: dict[str, CrashLoop] = field(default_factory=dict)  # changed entries
    backoff_started: list[str] = field(default_factory=list)  # names: a BackOff Event each
    probe: list[tuple[Obj, ContainerStatus]] = field(default_factory=list)


def crash_loop(entry: CrashLoop | None, exited: ContainerStatus, *, base: float,
               cap: float) -> CrashLoop:
    """The entry after seeing `exited` (the same entry when this exit was seen already)."""
    entry = entry or CrashLoop()
    if entry.seen_finish == exited.finished_at:
        return entry
    restarts = entry.restarts
    if exited.finished_at - exited.started_at > 2 * cap:
        restarts = 0  # it ran long enough: its back-off starts afresh
    delay = exponential_delay(base, cap, restarts)
    return CrashLoop(restarts + 1, exited.finished_at, exited.finished_at + delay, delay)


def backoff_message(pod: Obj, name: str, delay: float) -> str:
    """The CrashLoopBackOff waiting message, in the kubelet's words."""
    meta = pod["metadata"]
    return (f"back-off {go_duration(delay)} restarting failed container={name} "
            f"pod={meta['name']}_{meta.get('namespace', '')}({meta['uid']})")


class _Planner:
    def __init__(self, pod: Obj, observed: Observed, backoff: Mapping[str, CrashLoop],
                 base: float, cap: float) -> None:
        self.pod = pod
        self.observed = observed
        self.backoff = backoff
        self.base = base
        self.cap = cap
        self.actions = PodActions()
        spec = pod.get("spec") or {}
        self.policy = spec.get("restartPolicy", "Always")
        sandbox = observed.sandbox
        self.sandbox_id = sandbox.id if sandbox is not None and sandbox.ready else None

    def latest(self, name: str) -> ContainerStatus | None:
        attempts = self.observed.containers.get(name) or []
        return attempts[0] if attempts else None

    def current(self, latest: ContainerStatus | None) -> ContainerStatus | None:
        """The newest attempt if it belongs to the sandbox the pod runs in now."""
        if latest is None or latest.sandbox_id != self.sandbox_id:
            return None
        return latest

    def start(self, c: Obj, latest: ContainerStatus | None, *, init: bool = False) -> None:
        attempt = latest.attempt + 1 if latest is not None else 0
        self.actions.start.append(ContainerStart(c, attempt, latest, init))

    def restart(self, c: Obj, latest: ContainerStatus, *, init: bool = False) -> None:
        """Start `c` again after its exit `latest`, unless its back-off holds it."""
        name = c["name"]
        old = self.backoff.get(name)
        entry = crash_loop(old, latest, base=self.base, cap=self.cap)
        if entry != old:
            self.actions.backoff[name] = entry
            if entry.delay:
                self.actions.backoff_started.append(name)
        remaining = entry.until - self.observed.now
        if remaining > 0:
            self.actions.waiting[name] = (
                "CrashLoopBackOff", backoff_message(self.pod, name, entry.delay))
            retry = self.actions.retry_in
            self.actions.retry_in = remaining if retry is None else min(retry, remaining)
            return
        self.start(c, latest, init=init)

    def changed(self, c: Obj, latest: ContainerStatus) -> bool:
        """A running container whose image is no longer the spec's: killed and started
        again at once, whatever restartPolicy says."""
        if latest.state is not ContainerState.RUNNING or latest.image == c.get("image", ""):
            return False
        self.actions.kill.append((latest, f"Container {c['name']} definition changed, "
                                          "will be restarted"))
        self.start(c, latest)
        return True

    def plan(self) -> PodActions:
        spec = self.pod.get("spec") or {}
        actions = self.actions
        if self.sandbox_id is None:
            actions.kill_pod = any(
                c.state is not ContainerState.EXITED
                for attempts in self.observed.containers.values() for c in attempts)
            if self.policy == "Never" and self.observed.containers:
                return actions  # it ran once; it is not started again
            actions.create_sandbox = True
        if self.plan_init(spec.get("initContainers") or []):
            self.plan_containers(spec.get("containers") or [])
        return actions

    def plan_init(self, inits: list[Obj]) -> bool:
        """Start or restart the first init container not done; True when all are."""
        for c in inits:
            latest = self.latest(c["name"])
            now = self.current(latest)
            sidecar = c.get("restartPolicy") == "Always"
            if now is None:
                self.start(c, latest, init=not sidecar)  # first run, or a new sandbox
                return False
            if sidecar:
                if now.state is ContainerState.EXITED:
                    self.restart(c, now)
                    return False
                if now.state is not ContainerState.RUNNING or self.changed(c, now):
                    return False
                continue
            if now.state is ContainerState.EXITED and now.exit_code == 0:
                continue
            if now.state is ContainerState.EXITED and self.policy != "Never":
                self.restart(c, now, init=True)
            return False
        return True

    def plan_containers(self, containers: list[Obj]) -> None:
        for c in containers:
            latest = self.latest(c["name"])
            now = self.current(latest)
            if latest is None:
                self.start(c, None)
            elif now is None:  # it ran in a sandbox that is gone (killed if still running)
                if latest.state is not ContainerState.EXITED or self.may_restart(latest):
                    self.start(c, latest)
            elif now.state is ContainerState.EXITED:
                if self.may_restart(now):
                    self.restart(c, now)
            elif now.state is ContainerState.RUNNING and not self.changed(c, now):
                self.actions.probe.append((c, now))

    def may_restart(self, exited: ContainerStatus) -> bool:
        return self.policy == "Always" or (self.policy == "OnFailure" and
                                           exited.exit_code != 0)


def pod_actions(pod: Obj, observed: Observed, *, backoff: Mapping[str, CrashLoop] | None = None,
                backoff_base: float = 10.0, backoff_max: float = 300.0) -> PodActions:
    """What one sync of a running (not deleted, not terminal) pod does; see the module."""
    return _Planner(pod, observed, backoff or {}, backoff_base, backoff_max).plan()
