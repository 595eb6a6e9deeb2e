"""The seed's pod manifests on a real node, through kubectl: configMap, emptyDir and secret
volumes, and the π Job, running real containers from the stand-in images."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import direct_http, pod, real_cluster, wait_for
from tests.paths import MANIFESTS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("seed-pods"), local_registry.url)


def ready(c: Cluster, name: str) -> None:
    c.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s")


def test_configmap_pod_logs_and_live_update(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "03-configmap-pod.yaml"))
    ready(cluster, "configmap-pod")
    # `cat log_level` prints "debug" without a newline: it shows once the writer pauses
    wait_for(lambda: cluster.kubectl("logs", "configmap-pod").stdout.splitlines()[:2]
             == ["The app is running!", "debug"])
    cluster.kubectl("patch", "configmap", "log-config", "--type=merge",
                    "-p", '{"data":{"log_level":"info"}}')
    wait_for(lambda: cluster.kubectl("exec", "configmap-pod", "--", "cat",
                                     "/etc/config/log_level").stdout == "info", timeout=90)
    # the container was not restarted to see it
    assert pod(cluster, "configmap-pod")["status"]["containerStatuses"][0]["restartCount"] == 0


def test_emptydir_shared_between_containers(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "04-emptydir-pod.yaml"))
    ready(cluster, "emptydir-pod")
    # the consumer prints what the producer's `date` wrote into the shared dir
    stamp = re.compile(r"^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \w+ \d{4}$", re.M)

    def stamps() -> list[str] | None:
        found = stamp.findall(cluster.kubectl("logs", "emptydir-pod", "-c", "consumer").stdout)
        return found if len(found) >= 3 else None

    lines = wait_for(stamps)
    assert len(set(lines)) >= 2  # a new timestamp every second


def test_secret_pod(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "05-secret-pod.yaml"))
    ready(cluster, "secret-pod")
    out = cluster.kubectl("exec", "secret-pod", "--", "cat", "/etc/secret/password").stdout
    assert out == "s3cr3t-Passw0rd"
    logs = wait_for(lambda: "user=admin" in (o := cluster.kubectl("logs", "secret-pod").stdout)
                    and o)
    assert logs.splitlines()[0] == "user=admin"
    assert {"password", "username"} <= set(logs.split())
    # on the host, the secret's files are for root alone
    uid = pod(cluster, "secret-pod")["metadata"]["uid"]
    files = list(Path(cluster.data_dir).glob(f"pods/{uid}/volumes/*secret*/secret-vol/password"))
    assert files, "secret volume not found on the host"
    assert files[0].read_text() == "s3cr3t-Passw0rd"
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "cat", str(files[0])], capture_output=True, text=True)
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr


def test_pi_job(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "08-pi-job.yaml"))
    cluster.kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=180s",
                    timeout=200)
    digits = cluster.kubectl("logs", "job/pi").stdout.strip()
    assert digits.startswith("3.14159265358979323846264338327950288419716939937510")
    assert len(digits) == 2001 and digits[2:].isdigit()


def test_nginx_deployment_and_daemonset_serve_pages(cluster: Cluster) -> None:
    # the seed's Deployment (its Service's data path is the services issue's) and DaemonSet
    # run real nginx on this node; each pod answers on its own IP from the host
    cluster.kubectl("apply", "-f", str(MANIFESTS / "07-nginx-deployment-service.yaml"),
                    "-f", str(MANIFESTS / "09-nginx-daemonset.yaml"))
    cluster.kubectl("rollout", "status", "deployment/nginx", "--timeout=90s", timeout=100)
    cluster.kubectl("rollout", "status", "daemonset/nginx", "--timeout=90s", timeout=100)
    pods = json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
    nginx = [p for p in pods if p["spec"]["containers"][0]["image"].startswith("nginx")]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in nginx} == \
        {"ReplicaSet", "DaemonSet"}
    for p in nginx:
        ip = p["status"]["podIP"]
        with direct_http.open(f"http://{ip}/", timeout=5) as page:
            assert b"Welcome to nginx" in page.read()
    cluster.kubectl("delete", "-f", str(MANIFESTS / "07-nginx-deployment-service.yaml"),
                    "-f", str(MANIFESTS / "09-nginx-daemonset.yaml"))
