"""Container lifecycle on a real node, as kubectl and the official client see it: crash-loop
back-off, probes, memory limits, isolation between pods, the streams (exec, logs -f,
port-forward with kubectl and with the official client), and a SIGKILLed `pinnace up`
adopting what runs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import (
    NODE,
    container_status,
    pod,
    real_cluster,
    run_pod,
    wait_for,
)
from tests.ports import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("lifecycle"), local_registry.url)


def busybox(name: str, script: str, **extra: object) -> dict:
    return {"name": name, "image": "busybox:1.28", "command": ["sh", "-c", script], **extra}


def events(c: Cluster, name: str) -> list[dict]:
    out = c.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}",
                    "-o", "json").stdout
    return json.loads(out)["items"]


def test_crash_loop_back_off_with_growing_delays(cluster: Cluster) -> None:
    run_pod(cluster, "crasher", [busybox("c", "echo boom; exit 1")])
    # restart 1 at once, then back-offs of 1 s, 2 s, 4 s (--restart-backoff 1)
    status = wait_for(lambda: (s := container_status(cluster, "crasher"))
                      .get("restartCount", 0) >= 3 and s, timeout=60)
    waiting = wait_for(lambda: container_status(cluster, "crasher")["state"].get("waiting"))
    assert waiting["reason"] in ("CrashLoopBackOff", "ContainerCreating")
    wait_for(lambda: container_status(cluster, "crasher")["state"].get("waiting", {})
             .get("reason") == "CrashLoopBackOff", timeout=30, interval=0.05)
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    backoffs = [e for e in events(cluster, "crasher") if e["reason"] == "BackOff"]
    assert backoffs and "Back-off restarting failed container c in pod crasher_default" in \
        backoffs[0]["message"]
    # growing delays: the time between starts grows
    starts = []
    for _ in range(2):
        before = container_status(cluster, "crasher")["restartCount"]
        wait_for(lambda b=before: container_status(cluster, "crasher")["restartCount"] > b,
                 timeout=60, interval=0.05)
        starts.append(time.monotonic())
    third = container_status(cluster, "crasher")["restartCount"]
    wait_for(lambda: container_status(cluster, "crasher")["restartCount"] > third,
             timeout=90, interval=0.05)
    assert time.monotonic() - starts[1] > (starts[1] - starts[0]) * 1.3
    # each repeated Event is one object whose count grows (client-go's correlation), and
    # kubectl describe prints it as "Warning  BackOff  2s (x4 over 12s)  kubelet  Back-off…"
    repeated = {e["reason"]: e for e in events(cluster, "crasher")
                if e["reason"] in ("BackOff", "Started")}
    assert len([e for e in events(cluster, "crasher") if e["reason"] == "BackOff"]) == 1
    assert repeated["BackOff"]["count"] >= 2 and repeated["Started"]["count"] >= 4, repeated
    described = cluster.kubectl("describe", "pod", "crasher").stdout
    assert re.search(r"Warning\s+BackOff\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Back-off "
                     r"restarting failed container c", described), described
    cluster.kubectl("delete", "pod", "crasher", "--wait=false")


def test_liveness_probe_restarts_and_readiness_gates_ready(cluster: Cluster) -> None:
    probe = {"periodSeconds": 1, "failureThreshold": 1}
    run_pod(cluster, "probed", [
        busybox("live", "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 3600",
                livenessProbe={"exec": {"command": ["cat", "/tmp/ok"]}, **probe}),
        busybox("unready", "sleep 3600",
                readinessProbe={"exec": {"command": ["false"]}, **probe}),
    ])
    wait_for(lambda: container_status(cluster, "probed", "live").get("restartCount", 0) >= 1,
             timeout=60)
    p = pod(cluster, "probed")
    assert p["status"]["phase"] == "Running"
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds["Ready"] == "False"
    unready = container_status(cluster, "probed", "unready")
    assert unready["ready"] is False and "running" in unready["state"]
    seen = {(e["reason"], e["message"].split(":")[0], e["involvedObject"].get("fieldPath"))
            for e in events(cluster, "probed")}
    assert ("Unhealthy", "Liveness probe failed", "spec.containers{live}") in seen
    assert ("Unhealthy", "Readiness probe failed", "spec.containers{unready}") in seen
    assert any(e["reason"] == "Killing" and "failed liveness probe, will be restarted"
               in e["message"] for e in events(cluster, "probed"))
    cluster.kubectl("delete", "pod", "probed", "--wait=false")


def test_memory_limit_ends_as_oom_killed(cluster: Cluster) -> None:
    run_pod(cluster, "hog", [busybox("hog", "x=a; while true; do x=$x$x; done",
                                     resources={"limits": {"memory": "32Mi"}})],
            restartPolicy="Never")
    status = wait_for(lambda: container_status(cluster, "hog").get("state", {}).get("terminated"),
                      timeout=60)
    assert status["reason"] == "OOMKilled" and status["exitCode"] == 137
    assert pod(cluster, "hog")["status"]["phase"] == "Failed"


def test_security_context_and_cpu_limit(cluster: Cluster) -> None:
    run_pod(cluster, "locked", [busybox(
        "app", "sleep 3600", resources={"limits": {"cpu": "250m"}},
        securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True,
                         "capabilities": {"drop": ["ALL"]}})],
        securityContext={"runAsGroup": 3000, "supplementalGroups": [4000]})
    cluster.kubectl("wait", "--for=condition=Ready", "pod/locked", "--timeout=90s")
    ids = cluster.kubectl("exec", "locked", "--", "id").stdout
    assert "uid=1000" in ids and "gid=3000" in ids and "4000" in ids
    touched = cluster.kubectl("exec", "locked", "--", "touch", "/x", check=False)
    assert touched.returncode != 0 and "Read-only file system" in touched.stderr
    caps = cluster.kubectl("exec", "locked", "--", "grep", "CapBnd", "/proc/1/status").stdout
    assert caps.split()[1] == "0000000000000000"
    cid = container_status(cluster, "locked")["containerID"].removeprefix("runc://")
    quota = next(Path("/sys/fs/cgroup").glob(f"cpu*/pinnace/*/pod*/{cid}/cpu.cfs_quota_us"))
    assert quota.read_text().strip() == "25000"  # 250m of each 100 ms period
    # runAsNonRoot with an image that runs as root is refused before it starts
    run_pod(cluster, "rootless", [busybox("app", "sleep 3600")],
            securityContext={"runAsNonRoot": True})
    waiting = wait_for(lambda: container_status(cluster, "rootless").get("state", {})
                       .get("waiting", {}).get("reason") == "CreateContainerConfigError"
                       and container_status(cluster, "rootless")["state"]["waiting"])
    assert "runAsNonRoot and image will run as root" in waiting["message"]
    cluster.kubectl("delete", "pod", "locked", "rootless", "--wait=false")


def test_pre_stop_hook_runs_before_the_stop(cluster: Cluster) -> None:
    out = cluster.data_dir.parent / "prestop"
    out.mkdir()
    run_pod(cluster, "polite", [busybox(
        "app", "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /out/last"]}}},
        volumeMounts=[{"name": "out", "mountPath": "/out"}])],
        volumes=[{"name": "out", "hostPath": {"path": str(out), "type": "Directory"}}],
        terminationGracePeriodSeconds=10)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/polite", "--timeout=90s")
    cluster.kubectl("delete", "pod", "polite", timeout=30)
    assert (out / "last").read_text() == "bye\n"  # the hostPath data outlives the pod
    assert any(e["reason"] == "Killing" and e["message"] == "Stopping container app"
               for e in events(cluster, "polite"))


def test_pods_are_isolated_and_reach_each_other(cluster: Cluster) -> None:
    run_pod(cluster, "web", [{"name": "nginx", "image": "nginx:1.19"}])
    run_pod(cluster, "shell", [busybox("sh", "sleep 3600")])
    for name in ("web", "shell"):
        cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s")
    web_ip, shell_ip = pod(cluster, "web")["status"]["podIP"], \
        pod(cluster, "shell")["status"]["podIP"]
    assert web_ip and shell_ip and web_ip != shell_ip
    ps = cluster.kubectl("exec", "shell", "--", "ps", "-o", "pid,comm").stdout
    assert "nginx" not in ps and "sleep" in ps
    own_ip = cluster.kubectl("exec", "shell", "--", "ip", "-4", "-o", "addr", "show",
                             "eth0").stdout
    assert shell_ip in own_ip
    page = cluster.kubectl("exec", "shell", "--", "timeout", "5", "wget", "-qO-",
                           f"http://{web_ip}/").stdout
    assert "Welcome to nginx" in page


def test_exec_stdin_and_exit_code(cluster: Cluster) -> None:
    run_pod(cluster, "execer", [busybox("sh", "sleep 3600")])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/execer", "--timeout=90s")
    out = cluster.kubectl("exec", "-i", "execer", "--", "sh", "-c", "tr a-z A-Z",
                          input="hello from stdin\n").stdout
    assert out == "HELLO FROM STDIN\n"
    failed = cluster.kubectl("exec", "execer", "--", "sh", "-c", "echo err >&2; exit 3",
                             check=False)
    assert failed.returncode == 3 and "err" in failed.stderr


def test_kubectl_cp_both_ways(cluster: Cluster, tmp_path: Path) -> None:
    run_pod(cluster, "box", [busybox("sh", "sleep 3600")])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/box", "--timeout=90s")
    src = tmp_path / "notes.txt"
    src.write_text("copied in\n")
    cluster.kubectl("cp", str(src), "box:/tmp/notes.txt")
    assert cluster.kubectl("exec", "box", "--", "cat", "/tmp/notes.txt").stdout == "copied in\n"
    cluster.kubectl("exec", "box", "--", "sh", "-c", "echo made inside > /tmp/out.txt")
    cluster.kubectl("cp", "box:/tmp/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "made inside\n"


def test_python_client_exec_stream(cluster: Cluster) -> None:
    from kubernetes import client
    from kubernetes.stream import stream
    run_pod(cluster, "pyexec", [busybox("sh", "sleep 3600")])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/pyexec", "--timeout=90s")
    api = client.CoreV1Api(cluster.client())
    out = stream(api.connect_get_namespaced_pod_exec, "pyexec", "default",
                 command=["sh", "-c", "echo from-python; hostname"], stderr=True,
                 stdin=False, stdout=True, tty=False)
    assert out.split() == ["from-python", "pyexec"]


def test_logs_follow(cluster: Cluster) -> None:
    run_pod(cluster, "ticker", [busybox("t", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.5;"
                                             " done")], restartPolicy="Never")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/ticker", "--timeout=90s")
    followed = cluster.kubectl("logs", "-f", "ticker", timeout=30).stdout
    assert followed.splitlines() == [f"tick {i}" for i in range(1, 6)]
    stamped = cluster.kubectl("logs", "ticker", "--timestamps", "--tail", "2").stdout
    lines = stamped.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["tick 4", "tick 5"]
    datetime.fromisoformat(lines[0].split(" ")[0].replace("Z", "+00:00")[:26] + "+00:00")


def test_port_forward(cluster: Cluster) -> None:
    run_pod(cluster, "fwd", [{"name": "nginx", "image": "nginx:1.19"}])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/fwd", "--timeout=90s")
    port = free_port()
    proc = cluster.kubectl_popen("port-forward", "pod/fwd", f"{port}:80")
    try:
        def get() -> bytes | None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                    return data
            except OSError:
                return None
        page = wait_for(get, timeout=30)
        assert b"200 OK" in page and b"Welcome to nginx" in page
        assert b"Welcome to nginx" in (get() or b"")  # a second connection
    finally:
        proc.kill()
        proc.wait(10)


def test_python_client_port_forward(cluster: Cluster) -> None:
    """`kubernetes.stream.portforward` of the official client (WebSocket channels,
    v4.channel.k8s.io) reaches nginx's port 80 in a runc container and reads its page."""
    from kubernetes import client
    from kubernetes.stream import portforward
    run_pod(cluster, "pyfwd", [{"name": "nginx", "image": "nginx:1.19"}])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/pyfwd", "--timeout=90s")
    api = client.CoreV1Api(cluster.client())

    def get() -> bytes:
        pf = portforward(api.connect_get_namespaced_pod_portforward, "pyfwd", "default",
                         ports="80")
        try:
            s = pf.socket(80)
            s.settimeout(10)
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):  # nginx closes after an HTTP/1.0 answer
                data += chunk
            assert pf.error(80) is None
            return data
        finally:
            pf.close()

    page = get()
    assert page.startswith(b"HTTP/1.1 200 OK") and b"Welcome to nginx" in page
    assert b"Welcome to nginx" in get()  # a second forward, a second connection


def test_restart_adopts_running_containers(cluster: Cluster) -> None:
    run_pod(cluster, "survivor", [busybox("s", "sleep 3600")])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/survivor", "--timeout=90s")
    before = container_status(cluster, "survivor")
    assert cluster.proc is not None
    extra = tuple(cluster.proc.args[8:])  # the same flags as the first start
    cluster.kill()
    cluster.start(extra=extra)
    time.sleep(3)  # a few sync rounds of the new agent
    after = container_status(cluster, "survivor")
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == before["restartCount"]
    assert "running" in after["state"]
    uptime = cluster.kubectl("exec", "survivor", "--", "cat", "/proc/1/stat").stdout
    assert uptime.split()[1] == "(sleep)"


def test_deleted_node_registers_again(cluster: Cluster) -> None:
    cluster.kubectl("delete", "node", NODE)
    wait_for(lambda: cluster.kubectl("get", "node", NODE, check=False).returncode == 0,
             timeout=30)
    cluster.kubectl("wait", "--for=condition=Ready", f"node/{NODE}", "--timeout=60s")


def test_down_stops_every_container(cluster: Cluster) -> None:
    run_pod(cluster, "doomed", [busybox("d", "sleep 3600")])
    cluster.kubectl("wait", "--for=condition=Ready", "pod/doomed", "--timeout=90s")
    monitors = subprocess.run(["pgrep", "-f", str(cluster.data_dir / "runtime")],
                              capture_output=True, text=True).stdout.split()
    assert monitors
    up = cluster.proc
    assert up is not None and up.poll() is None
    cluster.down()  # stops the running `pinnace up` first
    assert up.wait(15) == 0
    left = subprocess.run(["pgrep", "-f", str(cluster.data_dir / "runtime")],
                          capture_output=True, text=True).stdout.split()
    assert left == []
