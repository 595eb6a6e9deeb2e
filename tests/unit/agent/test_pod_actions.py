"""What a pod sync does (the kubelet's computePodActions), from the spec and observations."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.agent.pod_actions import CrashLoop, PodActions, crash_loop, pod_actions
from pinnace.agent.pod_status import Observed
from pinnace.agent.runtime import ContainerState, ContainerStatus, PodSandboxStatus

T0 = 1_700_000_000.0
SANDBOX = PodSandboxStatus("sb", "uid", True, "10.244.0.7", T0)
RUNNING, EXITED, CREATED = ContainerState.RUNNING, ContainerState.EXITED, ContainerState.CREATED


def pod(policy: str = "Always", *, inits: tuple[str, ...] = (), sidecar: str = "",
        image: str = "img") -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": policy,
                            "containers": [{"name": "a", "image": image},
                                           {"name": "b", "image": "img"}]}
    init_specs = [{"name": n, "image": "img"} for n in inits]
    if sidecar:
        init_specs.append({"name": sidecar, "image": "img", "restartPolicy": "Always"})
    if init_specs:
        spec["initContainers"] = init_specs
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid"}, "spec": spec}


def c(name: str, state: ContainerState, *, code: int = 0, attempt: int = 0,
      sandbox: str = "sb", finished: float = T0 + 2, image: str = "img") -> ContainerStatus:
    exited = state is EXITED
    return ContainerStatus(f"{name}{attempt}", sandbox, name, image, "sha256:x", attempt,
                           state, T0, started_at=T0 + 1,
                           finished_at=finished if exited else 0.0, exit_code=code)


def observe(*containers: ContainerStatus, sandbox: PodSandboxStatus | None = SANDBOX,
            now: float = T0 + 5) -> Observed:
    by: dict[str, list[ContainerStatus]] = {}
    for x in containers:
        by.setdefault(x.name, []).append(x)
    for v in by.values():
        v.sort(key=lambda x: x.attempt, reverse=True)
    return Observed(sandbox, by, "172.16.0.2", now)


def started(actions: PodActions) -> list[tuple[str, int]]:
    return [(s.spec["name"], s.attempt) for s in actions.start]


def test_a_new_pod_gets_a_sandbox_and_all_its_containers() -> None:
    actions = pod_actions(pod(), observe(sandbox=None))
    assert actions.create_sandbox and not actions.kill_pod
    assert started(actions) == [("a", 0), ("b", 0)]


def test_running_containers_are_only_probed() -> None:
    actions = pod_actions(pod(), observe(c("a", RUNNING), c("b", RUNNING)))
    assert not actions.create_sandbox and not actions.start and not actions.kill
    assert [s.name for _, s in actions.probe] == ["a", "b"]


@pytest.mark.parametrize(("policy", "code", "restarts"), [
    ("Always", 0, True), ("Always", 1, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True),
    ("Never", 0, False), ("Never", 1, False)])
def test_restart_policy(policy: str, code: int, restarts: bool) -> None:
    actions = pod_actions(pod(policy), observe(c("a", EXITED, code=code), c("b", RUNNING)))
    assert started(actions) == ([("a", 1)] if restarts else [])
    if restarts:
        assert actions.start[0].previous is not None and actions.start[0].previous.id == "a0"


def test_init_containers_run_one_at_a_time_before_the_others() -> None:
    p = pod(inits=("i1", "i2"))
    assert started(pod_actions(p, observe())) == [("i1", 0)]
    assert pod_actions(p, observe()).start[0].init
    assert started(pod_actions(p, observe(c("i1", RUNNING)))) == []
    assert started(pod_actions(p, observe(c("i1", EXITED)))) == [("i2", 0)]
    assert started(pod_actions(p, observe(c("i1", EXITED), c("i2", EXITED)))) == \
        [("a", 0), ("b", 0)]


def test_a_failed_init_container_restarts_unless_the_policy_is_never() -> None:
    failed = observe(c("i1", EXITED, code=1))
    assert started(pod_actions(pod("OnFailure", inits=("i1",)), failed)) == [("i1", 1)]
    assert started(pod_actions(pod("Never", inits=("i1",)), failed)) == []


def test_a_sidecar_is_done_once_it_runs_and_restarts_whenever_it_exits() -> None:
    p = pod("Never", sidecar="s")
    assert started(pod_actions(p, observe(c("s", RUNNING)))) == [("a", 0), ("b", 0)]
    restart = pod_actions(p, observe(c("s", EXITED), c("a", RUNNING), c("b", RUNNING)))
    assert started(restart) == [("s", 1)] and not restart.start[0].init


def test_crash_loop_back_off_holds_the_restart_and_says_for_how_long() -> None:
    p = pod()
    first = pod_actions(p, observe(c("a", EXITED), c("b", RUNNING)), backoff_base=10)
    assert started(first) == [("a", 1)]  # the first restart is immediate
    assert first.backoff["a"].restarts == 1 and not first.backoff_started
    second_exit = c("a", EXITED, attempt=1, finished=T0 + 20)
    held = pod_actions(p, observe(c("a", EXITED), second_exit, c("b", RUNNING), now=T0 + 21),
                       backoff=first.backoff, backoff_base=10)
    assert started(held) == []
    assert held.backoff_started == ["a"] and held.backoff["a"].until == T0 + 30
    reason, message = held.waiting["a"]
    assert reason == "CrashLoopBackOff"
    assert message == "back-off 10s restarting failed container=a pod=p_ns(uid)"
    assert held.retry_in == pytest.approx(9.0)
    # the same exit again, later: no new entry, no new Event; the restart is due
    due = pod_actions(p, observe(c("a", EXITED), second_exit, c("b", RUNNING), now=T0 + 31),
                      backoff={**first.backoff, **held.backoff}, backoff_base=10)
    assert started(due) == [("a", 2)] and not due.backoff and not due.backoff_started


def test_back_off_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    entry: CrashLoop | None = None
    delays = []
    for n in range(8):
        entry = crash_loop(entry, c("a", EXITED, finished=T0 + 2 + n), base=10, cap=300)
        delays.append(entry.delay)
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    long_run = ContainerStatus("x", "sb", "a", "img", "", 9, EXITED, T0, started_at=T0,
                               finished_at=T0 + 601)
    assert crash_loop(entry, long_run, base=10, cap=300).delay == 0


def test_a_changed_image_kills_and_restarts_the_container() -> None:
    actions = pod_actions(pod("Never", image="img:2"), observe(c("a", RUNNING), c("b", RUNNING)))
    assert [(k.id, why) for k, why in actions.kill] == \
        [("a0", "Container a definition changed, will be restarted")]
    assert started(actions) == [("a", 1)]
    assert [s.name for _, s in actions.probe] == ["b"]


def test_a_gone_sandbox_kills_the_pod_and_starts_it_again() -> None:
    gone = PodSandboxStatus("old", "uid", False, "10.244.0.7", T0)
    p = pod(inits=("i1",))
    actions = pod_actions(p, observe(c("i1", EXITED, sandbox="old"), c("a", RUNNING, sandbox="old"),
                                     c("b", EXITED, sandbox="old"), sandbox=gone))
    assert actions.create_sandbox and actions.kill_pod
    assert started(actions) == [("i1", 1)]  # init containers run again, first to last


def test_a_gone_sandbox_of_a_never_pod_only_stops_it() -> None:
    actions = pod_actions(pod("Never"), observe(c("a", RUNNING), c("b", EXITED), sandbox=None))
    assert actions.kill_pod and not actions.create_sandbox and not actions.start
