"""Issue 3, Done-when 2: the seed Deployment scales, rolls, rolls back and self-heals.

The seed (`07-nginx-deployment-service.yaml`) is applied once into a namespace of
a 3-node simulated cluster; the tests run in file order on it (scale leaves 2
replicas, the rollout starts from there). Rollouts are checked while they happen
by a `PodWatch`: after every pod event, pods not terminating stay within
replicas + maxSurge and Ready ones at or above replicas - maxUnavailable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import (
    PodWatch,
    apply,
    get_json,
    is_ready,
    items,
    live,
    new_namespace,
    start_fake_cluster,
    wait_for,
)
from tests.paths import MANIFESTS

pytestmark = pytest.mark.e2e

SEED = MANIFESTS / "07-nginx-deployment-service.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_fake_cluster(tmp_path_factory) as c:
        yield c


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = new_namespace(cluster, "deploy")
    apply(cluster, SEED, "-n", name)
    cluster.kubectl("rollout", "status", "deployment/nginx", "-n", name, "--timeout=30s")
    return name


def nginx_pods(c: Cluster, ns: str) -> list[dict[str, Any]]:
    return live(items(c, "pods", "-n", ns, "-l", "app=nginx"))


def wait_replicas(c: Cluster, ns: str, n: int, image: str | None = None) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        pods = nginx_pods(c, ns)
        if len(pods) != n or not all(is_ready(p) for p in pods):
            return None
        if image and any(p["spec"]["containers"][0]["image"] != image for p in pods):
            return None
        return pods or [{}]
    return wait_for(done, timeout=30, what=f"{n} ready nginx pods ({image or 'any image'})")


def test_scale_1_5_2(cluster: Cluster, ns: str) -> None:
    assert len(wait_replicas(cluster, ns, 1)) == 1
    for n in (5, 2):
        cluster.kubectl("scale", "deployment", "nginx", "-n", ns, f"--replicas={n}")
        cluster.kubectl("rollout", "status", "deployment/nginx", "-n", ns, "--timeout=30s")
        wait_replicas(cluster, ns, n)
        status = get_json(cluster, "deployment", "nginx", "-n", ns)["status"]
        assert status["replicas"] == n and status["readyReplicas"] == n
        assert status["availableReplicas"] == n


class SurgeChecker:
    """Records the worst counts seen while a rollout of `replicas` runs."""

    def __init__(self, replicas: int, max_surge: int, max_unavailable: int) -> None:
        self.limit_live = replicas + max_surge
        self.floor_ready = replicas - max_unavailable
        self.max_live = 0
        self.min_ready = replicas
        self.violations: list[str] = []

    def __call__(self, pods: dict[str, dict[str, Any]]) -> None:
        current = live(list(pods.values()))
        ready = [p for p in current if is_ready(p)]
        self.max_live = max(self.max_live, len(current))
        self.min_ready = min(self.min_ready, len(ready))
        if len(current) > self.limit_live or len(ready) < self.floor_ready:
            self.violations.append(f"{len(current)} live, {len(ready)} ready: "
                                   f"{sorted(pods)}")


def rollout_checked(cluster: Cluster, ns: str, *command: str) -> SurgeChecker:
    """Run a kubectl command that starts a rollout; watch it to the end; return the counts."""
    spec = get_json(cluster, "deployment", "nginx", "-n", ns)["spec"]
    replicas = spec["replicas"]
    rolling = spec["strategy"]["rollingUpdate"]
    # 25% of 2: surge rounds up, unavailable rounds down (Kubernetes' rule).
    surge = math.ceil(replicas * int(rolling["maxSurge"].rstrip("%")) / 100)
    unavailable = math.floor(replicas * int(rolling["maxUnavailable"].rstrip("%")) / 100)
    checker = SurgeChecker(replicas, surge, unavailable)
    with PodWatch(cluster, ns, label_selector="app=nginx", check=checker) as w:
        cluster.kubectl(*command, "-n", ns)
        result = cluster.kubectl("rollout", "status", "deployment/nginx", "-n", ns,
                                 "--timeout=30s", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "successfully rolled out" in result.stdout
        w.assert_ok()
    assert not checker.violations, checker.violations[:5]
    return checker


def test_set_image_rolls_within_surge_and_undo_restores(cluster: Cluster, ns: str) -> None:
    wait_replicas(cluster, ns, 2)
    checker = rollout_checked(cluster, ns, "set", "image", "deployment/nginx", "nginx=nginx:1.20")
    # maxUnavailable 0 leaves surging as the only way forward: the watch must have seen it.
    assert checker.max_live == 3 and checker.min_ready == 2
    wait_replicas(cluster, ns, 2, image="nginx:1.20")
    rs = items(cluster, "rs", "-n", ns)
    assert len(rs) == 2
    by_image = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r for r in rs}
    assert by_image["nginx:1.20"]["spec"]["replicas"] == 2
    assert by_image["nginx:1.19"]["spec"]["replicas"] == 0
    deploy = get_json(cluster, "deployment", "nginx", "-n", ns)
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    assert rollout_checked(cluster, ns, "rollout", "undo", "deployment/nginx").max_live == 3
    deploy = get_json(cluster, "deployment", "nginx", "-n", ns)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.19"
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    wait_replicas(cluster, ns, 2, image="nginx:1.19")
    # The undo reused the first ReplicaSet rather than making a third.
    rs = items(cluster, "rs", "-n", ns)
    assert len(rs) == 2
    assert {r["metadata"]["name"]: r["spec"]["replicas"] for r in rs}[
        by_image["nginx:1.19"]["metadata"]["name"]] == 2


def test_deleted_pod_is_replaced(cluster: Cluster, ns: str) -> None:
    before = {p["metadata"]["name"] for p in wait_replicas(cluster, ns, 2)}
    victim = sorted(before)[0]
    cluster.kubectl("delete", "pod", victim, "-n", ns)
    after = {p["metadata"]["name"] for p in wait_replicas(cluster, ns, 2)}
    assert victim not in after
    assert len(after - before) == 1


def test_kubectl_create_deployment(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "deploy-create")
    cluster.kubectl("create", "deployment", "web", "--image=nginx:1.20", "--replicas=2",
                    "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    assert len(live(items(cluster, "pods", "-n", ns, "-l", "app=web"))) == 2
