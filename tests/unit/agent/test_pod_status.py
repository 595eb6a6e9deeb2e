"""Pod status as kubelet reports it, computed from runtime observations."""

from __future__ import annotations

from typing import Any

from pinnace.agent.pod_status import Observed, compute_pod_status
from pinnace.agent.runtime import ContainerState, ContainerStatus, PodSandboxStatus

T0 = 1_700_000_000.0
SANDBOX = PodSandboxStatus("sb", "uid", True, "10.244.0.7", T0)


def pod(policy: str = "Always", *, init: bool = False, status: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": policy, "nodeName": "n",
                            "containers": [{"name": "a", "image": "img"},
                                           {"name": "b", "image": "img"}]}
    if init:
        spec["initContainers"] = [{"name": "i", "image": "img"}]
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid"}, "spec": spec,
            "status": status or {"phase": "Pending", "qosClass": "BestEffort"}}


def c(name: str, state: ContainerState, *, code: int = 0, attempt: int = 0
      ) -> ContainerStatus:
    exited = state is ContainerState.EXITED
    return ContainerStatus(f"{name}{attempt}", "sb", name, "img", "sha256:x", attempt, state,
                           T0, started_at=T0 + 1, finished_at=T0 + 2 if exited else 0.0,
                           exit_code=code, reason=("Completed" if code == 0 else "Error")
                           if exited else "")


def observe(*containers: ContainerStatus, waiting: Any = None,
            terminating: bool = False) -> Observed:
    by: dict[str, list[ContainerStatus]] = {}
    for x in containers:
        by.setdefault(x.name, []).append(x)
    for v in by.values():
        v.sort(key=lambda x: x.attempt, reverse=True)
    return Observed(SANDBOX, by, "172.16.0.2", T0 + 5, waiting=waiting or {},
                    terminating=terminating)


def conds(status: dict[str, Any]) -> dict[str, str]:
    return {x["type"]: x["status"] for x in status["conditions"]}


def test_running_and_ready() -> None:
    st = compute_pod_status(pod(), observe(c("a", ContainerState.RUNNING),
                                           c("b", ContainerState.RUNNING)))
    assert st["phase"] == "Running" and st["podIP"] == "10.244.0.7"
    assert st["hostIP"] == "172.16.0.2" and st["qosClass"] == "BestEffort"
    assert conds(st) == {"PodReadyToStartContainers": "True", "Initialized": "True",
                         "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    a = st["containerStatuses"][0]
    assert a["state"] == {"running": {"startedAt": "2023-11-14T22:13:21Z"}}
    assert a["containerID"] == "fake://a0" and a["ready"] and a["restartCount"] == 0


def test_one_container_missing_is_pending_and_not_ready() -> None:
    st = compute_pod_status(pod(), observe(c("a", ContainerState.RUNNING)))
    assert st["phase"] == "Pending"
    ready = next(x for x in st["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [b]"
    assert st["containerStatuses"][1]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_phases_by_restart_policy() -> None:
    ok, bad = c("a", ContainerState.EXITED), c("b", ContainerState.EXITED, code=1)
    assert compute_pod_status(pod("Never"), observe(ok, c("b", ContainerState.EXITED))
                              )["phase"] == "Succeeded"
    assert compute_pod_status(pod("Never"), observe(ok, bad))["phase"] == "Failed"
    assert compute_pod_status(pod("OnFailure"), observe(ok, bad))["phase"] == "Running"
    assert compute_pod_status(pod("Always"), observe(ok, bad))["phase"] == "Running"
    done = compute_pod_status(pod("Never"), observe(ok, c("b", ContainerState.EXITED)))
    ready = next(x for x in done["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    term = done["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["finishedAt"]


def test_crash_loop_shows_waiting_and_last_state() -> None:
    held = {"a": ("CrashLoopBackOff", "back-off 10s restarting failed container=a")}
    st = compute_pod_status(pod(), observe(
        c("a", ContainerState.EXITED, code=1, attempt=2), c("a", ContainerState.EXITED,
                                                            code=1, attempt=1),
        c("b", ContainerState.RUNNING), waiting=held))
    a = st["containerStatuses"][0]
    assert a["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert a["lastState"]["terminated"]["exitCode"] == 1 and a["restartCount"] == 2
    assert st["phase"] == "Running" and conds(st)["Ready"] == "False"


def test_init_containers_gate_the_rest() -> None:
    st = compute_pod_status(pod(init=True), observe(c("i", ContainerState.RUNNING)))
    assert st["phase"] == "Pending" and conds(st)["Initialized"] == "False"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    failed = compute_pod_status(pod("Never", init=True),
                                observe(c("i", ContainerState.EXITED, code=2)))
    assert failed["phase"] == "Failed"
    st = compute_pod_status(pod(init=True), observe(
        c("i", ContainerState.EXITED), c("a", ContainerState.RUNNING),
        c("b", ContainerState.RUNNING)))
    assert st["phase"] == "Running" and conds(st)["Initialized"] == "True"
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_terminating_pod_ends_in_terminal_phase() -> None:
    stopped = observe(c("a", ContainerState.EXITED, code=143),
                      c("b", ContainerState.EXITED, code=143), terminating=True)
    assert compute_pod_status(pod(), stopped)["phase"] == "Failed"


def test_same_observation_gives_same_status() -> None:
    obs = observe(c("a", ContainerState.RUNNING), c("b", ContainerState.RUNNING))
    first = compute_pod_status(pod(), obs)
    later = Observed(obs.sandbox, obs.containers, obs.host_ip, T0 + 100)
    again = compute_pod_status(pod(status=first), later)
    assert again == first  # nothing to write
