"""kubectl's generator commands (`kubectl create <kind> …`) POST protobuf; they must work."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import get_json


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    cluster.kubectl("create", "namespace", "gen")
    assert get_json(cluster, "namespace", "gen")["status"]["phase"] == "Active"
    return "gen"


def create(cluster: Cluster, ns: str, *args: str) -> dict:
    """`kubectl create ARGS -n NS`, then the object it made as `kubectl get -o json` shows."""
    out = cluster.kubectl("create", "-n", ns, *args).stdout.strip()
    assert out.endswith(" created"), out
    return get_json(cluster, out.split()[0], "-n", ns)


def test_configmap_and_secret(cluster: Cluster, ns: str) -> None:
    cm = create(cluster, ns, "configmap", "cm", "--from-literal=a=b", "--from-literal=c=d")
    assert cm["data"] == {"a": "b", "c": "d"}
    secret = create(cluster, ns, "secret", "generic", "s", "--from-literal=password=hunter2")
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"


def test_deployment(cluster: Cluster, ns: str) -> None:
    d = create(cluster, ns, "deployment", "web", "--image=nginx:1.19", "--replicas=2")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    [container] = d["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("nginx", "nginx:1.19")


def test_job_and_cronjob(cluster: Cluster, ns: str) -> None:
    job = create(cluster, ns, "job", "hello", "--image=busybox:1.28", "--", "echo", "hi")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["echo", "hi"]
    cron = create(cluster, ns, "cronjob", "tick", "--image=busybox:1.28",
                  "--schedule=*/5 * * * *", "--", "echo", "hi")
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == \
        "OnFailure"


def test_service_clusterip(cluster: Cluster, ns: str) -> None:
    svc = create(cluster, ns, "service", "clusterip", "s", "--tcp=80:8080")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["clusterIP"]
    [port] = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP")


def test_serviceaccount_role_and_rolebinding(cluster: Cluster, ns: str) -> None:
    sa = create(cluster, ns, "serviceaccount", "robot")
    assert sa["metadata"]["name"] == "robot"
    role = create(cluster, ns, "role", "reader", "--verb=get", "--resource=pods")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    rb = create(cluster, ns, "rolebinding", "read", "--role=reader", "--user=alice")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "reader"}
    assert rb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                               "name": "alice"}]
    can = cluster.kubectl("auth", "can-i", "get", "pods", "-n", ns, "--as=alice", check=False)
    assert can.stdout.strip() == "yes"
