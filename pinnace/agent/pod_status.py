"""The pod status a node agent reports, as a pure function of what the runtime shows.

`compute_pod_status(pod, observed)` returns the pod's whole new status: the
fields the agent owns (phase, conditions, containerStatuses, podIP, hostIP,
startTime) recomputed, everything else kept. It follows kubelet's rules
(`getPhase`, `generateAPIPodStatus`): a container held back after a crash is
`waiting: CrashLoopBackOff` with its last exit in `lastState`; with restartPolicy
Always a pod whose containers all stopped is still Running; a pod being deleted
ends in a terminal phase. Transition times are kept while a condition's status
stays the same, so computing twice gives the same answer and the agent writes
only on change. Its twin for what to do rather than what to report is
`pod_actions.pod_actions`, over the same `Observed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pinnace.agent.runtime.interface import ContainerState, ContainerStatus, PodSandboxStatus
from pinnace.api.conditions import new_condition
from pinnace.api.timestamps import format_time
from pinnace.api.types import Obj

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class Observed:
    """What the agent saw for one pod."""
    sandbox: PodSandboxStatus | None
    containers: dict[str, list[ContainerStatus]]  # per container name, newest attempt first
    host_ip: str
    now: float
    runtime: str = "fake"
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (reason, msg)
    terminating: bool = False
    # probe results by container id (real nodes): None = running means ready and started
    ready: Callable[[str], bool] | None = None
    started: Callable[[str], bool] | None = None


def init_state(pod: Obj, observed: Observed) -> tuple[bool, bool, list[str]]:
    """(all init containers done, one failed for good, names not done)."""
    spec = pod.get("spec") or {}
    never = spec.get("restartPolicy", "Always") == "Never"
    pending: list[str] = []
    failed = False
    for c in spec.get("initContainers") or []:
        attempts = observed.containers.get(c["name"]) or []
        latest = attempts[0] if attempts else None
        if c.get("restartPolicy") == "Always":  # a sidecar: done once it runs
            if latest is None or latest.state is not ContainerState.RUNNING:
                pending.append(c["name"])
            continue
        if latest is not None and latest.state is ContainerState.EXITED:
            if latest.exit_code == 0:
                continue
            failed = failed or never
        pending.append(c["name"])
    return not pending, failed, pending


def container_status(spec_c: Obj, attempts: list[ContainerStatus], observed: Observed, *,
                     default_wait: str) -> Obj:
    latest = attempts[0] if attempts else None
    prefix = observed.runtime + "://"
    out: Obj = {"name": spec_c["name"], "image": spec_c.get("image", ""),
                "imageID": "", "ready": False, "started": False, "restartCount": 0,
                "state": {"waiting": {"reason": default_wait}}, "lastState": {}}
    held = observed.waiting.get(spec_c["name"])
    if latest is None:
        if held:
            out["state"] = {"waiting": {"reason": held[0], "message": held[1]}}
        return out
    out["imageID"] = latest.image_id
    out["containerID"] = prefix + latest.id
    out["restartCount"] = latest.attempt
    previous = attempts[1] if len(attempts) > 1 else None
    if previous is not None and previous.state is ContainerState.EXITED:
        out["lastState"] = {"terminated": _terminated(previous, prefix)}
    if latest.state is ContainerState.RUNNING:
        out["state"] = {"running": {"startedAt": format_time(latest.started_at)}}
        out["started"] = observed.started(latest.id) if observed.started else True
        out["ready"] = out["started"] and (observed.ready(latest.id) if observed.ready
                                           else True)
    elif latest.state is ContainerState.EXITED and held:
        out["state"] = {"waiting": {"reason": held[0], "message": held[1]}}
        out["lastState"] = {"terminated": _terminated(latest, prefix)}
    elif latest.state is ContainerState.EXITED:
        out["state"] = {"terminated": _terminated(latest, prefix)}
    else:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
    return out


def _terminated(c: ContainerStatus, prefix: str) -> Obj:
    t: Obj = {"exitCode": c.exit_code, "reason": c.reason or
              ("Completed" if c.exit_code == 0 else "Error"),
              "finishedAt": format_time(c.finished_at), "containerID": prefix + c.id}
    t["startedAt"] = format_time(c.started_at) if c.started_at else None
    if c.message:
        t["message"] = c.message
    return t


def phase_of(pod: Obj, statuses: list[Obj], *, init_done: bool, init_failed: bool,
             terminating: bool) -> str:
    """Kubernetes' getPhase over the computed container statuses."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if init_failed:
        return "Failed"
    if not init_done:
        return "Failed" if terminating else "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif "terminated" in s["lastState"]:
            stopped += 1
            succeeded += s["lastState"]["terminated"]["exitCode"] == 0
        else:
            waiting += 1
    if terminating and running == 0:
        return "Succeeded" if stopped and stopped == succeeded and not waiting else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _condition(old: dict[str, Obj], ctype: str, ok: bool, now: str, reason: str = "",
               message: str = "") -> Obj:
    """A condition the agent owns; a False one says why (`reason`, then `message`)."""
    why = reason if not ok else ""
    return new_condition(ctype, "True" if ok else "False", why, message if why else "",
                         now=now, previous=old.get(ctype))


def compute_pod_status(pod: Obj, observed: Observed) -> Obj:
    spec = pod.get("spec") or {}
    old = dict(pod.get("status") or {})
    now = format_time(observed.now)
    init_done, init_failed, init_pending = init_state(pod, observed)
    inits = [container_status(c, observed.containers.get(c["name"]) or [], observed,
                              default_wait="PodInitializing")
             for c in spec.get("initContainers") or []]
    mains = [container_status(c, observed.containers.get(c["name"]) or [], observed,
                              default_wait="PodInitializing" if not init_done
                              else "ContainerCreating")
             for c in spec.get("containers") or []]
    if old.get("phase") in TERMINAL_PHASES:
        phase = old["phase"]
    else:
        phase = phase_of(pod, mains, init_done=init_done, init_failed=init_failed,
                         terminating=observed.terminating)
    unready = [s["name"] for s in mains if not s["ready"]]
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    done = phase == "Succeeded"
    reason = "PodCompleted" if done else "ContainersNotReady"
    message = "" if done else f"containers with unready status: [{' '.join(unready)}]"
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    gates_ok = all((old_conds.get(g) or {}).get("status") == "True" for g in gates)
    ready_ok = not unready and gates_ok and not done
    ready_reason, ready_message = (reason, message) if unready or done else (
        "ReadinessGatesNotReady", "corresponding condition of pod readiness gate is not True")
    owned = [
        _condition(old_conds, "PodReadyToStartContainers",
                   observed.sandbox is not None and observed.sandbox.ready, now),
        _condition(old_conds, "Initialized", init_done, now, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(init_pending)}]"),
        _condition(old_conds, "Ready", ready_ok, now, ready_reason, ready_message),
        _condition(old_conds, "ContainersReady", not unready and not done, now, reason,
                   message),
    ]
    if done:  # a completed pod's init containers all ran
        owned[1] = _condition(old_conds, "Initialized", True, now)
    scheduled = old_conds.get("PodScheduled") or {
        "type": "PodScheduled", "status": "True", "lastTransitionTime": now}
    own_types = {c["type"] for c in owned} | {"PodScheduled"}
    others = [c for t, c in old_conds.items() if t not in own_types]
    status = old
    status["phase"] = phase
    status["conditions"] = [*owned, scheduled, *others]
    status["hostIP"] = observed.host_ip
    status["hostIPs"] = [{"ip": observed.host_ip}]
    pod_ip = observed.host_ip if spec.get("hostNetwork") else \
        (observed.sandbox.ip if observed.sandbox else "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status["startTime"] = old.get("startTime") or now
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = mains
    return status
