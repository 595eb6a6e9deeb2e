"""Issue 3, Done-when 3: Jobs on simulated nodes — parallelism, backoff, suspend, Indexed, delete.

Pods "run" on fake nodes and exit after `pinnace.io/fake-exit-after` with
`pinnace.io/fake-exit-code`. The cluster runs with `--job-backoff 1`, so a
failing pod's replacement waits 1 s, then 2 s, … Each test has its own namespace.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import datetime
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

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_fake_cluster(tmp_path_factory, "--job-backoff", "1") as c:
        yield c


def job_manifest(name: str, *, exit_after: str | None = "1s", exit_code: int = 0,
                 **spec: Any) -> str:
    annotations = {}
    if exit_after is not None:
        annotations = {"pinnace.io/fake-exit-after": exit_after,
                       "pinnace.io/fake-exit-code": str(exit_code)}
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {**spec, "template": {
            "metadata": {"annotations": annotations},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})


def job_pods(c: Cluster, ns: str, job: str) -> list[dict[str, Any]]:
    return items(c, "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={job}")


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            return cond
    return None


def test_parallelism_caps_active_pods_and_job_completes(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-par")
    most = [0]

    def check(pods: dict[str, dict[str, Any]]) -> None:
        most[0] = max(most[0], len(live(list(pods.values()))))
        assert most[0] <= 2, f"{most[0]} active pods: {sorted(pods)}"

    with PodWatch(cluster, ns, check=check) as w:
        apply(cluster, job_manifest("x", completions=5, parallelism=2), "-n", ns)
        cluster.kubectl("wait", "--for=condition=complete", "job/x", "-n", ns,
                        "--timeout=60s", timeout=70)
        w.assert_ok()
    assert most[0] == 2
    pods = job_pods(cluster, ns, "x")
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"] * 5
    status = get_json(cluster, "job", "x", "-n", ns)["status"]
    assert status["succeeded"] == 5 and status.get("active", 0) == 0
    assert status.get("failed", 0) == 0 and status["completionTime"]


def test_failing_pods_back_off_until_backoff_limit(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-fail")
    with PodWatch(cluster, ns) as w:
        apply(cluster, job_manifest("x", exit_code=1, backoffLimit=2), "-n", ns)
        cluster.kubectl("wait", "--for=condition=failed", "job/x", "-n", ns,
                        "--timeout=60s", timeout=70)
        w.assert_ok()
        created = w.added()
    job = get_json(cluster, "job", "x", "-n", ns)
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 3
    pods = {p["metadata"]["name"]: p for p in job_pods(cluster, ns, "x")}
    assert len(pods) == 3 and {p["status"]["phase"] for p in pods.values()} == {"Failed"}
    assert len(created) == 3, created
    # Like Kubernetes, the delay counts from the failed container's finishedAt (whole
    # seconds): 1 s after the first failure, 2 s after the second (base 1 s, doubling).
    waits = []
    for (_, previous), (t, _) in itertools.pairwise(created):
        finished = pods[previous]["status"]["containerStatuses"][0]["state"]["terminated"]
        waits.append(t - datetime.fromisoformat(finished["finishedAt"]).timestamp())
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(created)]
    assert waits[0] >= 0.95 and waits[1] >= 1.95, (waits, gaps)
    assert waits[1] > waits[0] + 0.7, (waits, gaps)
    assert gaps[1] > gaps[0], (waits, gaps)
    # No more pods after the Job failed.
    time.sleep(1.5)
    assert len(job_pods(cluster, ns, "x")) == 3


def test_suspend_removes_active_pods_and_resume_completes(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-sus")
    apply(cluster, job_manifest("x", exit_after="3s", completions=2, parallelism=2), "-n", ns)
    wait_for(lambda: len([p for p in live(job_pods(cluster, ns, "x")) if is_ready(p)]) == 2,
             what="2 running job pods")
    cluster.kubectl("patch", "job", "x", "-n", ns, "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: not live(job_pods(cluster, ns, "x")), what="active pods to go")
    job = wait_for(lambda: (j := get_json(cluster, "job", "x", "-n", ns))
                   and condition(j, "Suspended") and j, what="Suspended condition")
    assert job["status"].get("active", 0) == 0
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    time.sleep(0.5)  # still nothing runs while suspended
    assert not live(job_pods(cluster, ns, "x"))

    cluster.kubectl("patch", "job", "x", "-n", ns, "-p", '{"spec":{"suspend":false}}')
    cluster.kubectl("wait", "--for=condition=complete", "job/x", "-n", ns, "--timeout=60s",
                    timeout=70)
    job = get_json(cluster, "job", "x", "-n", ns)
    assert job["status"]["succeeded"] == 2
    assert not condition(job, "Suspended")


def test_indexed_job_runs_each_index_once(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-idx")
    apply(cluster, job_manifest("x", completions=4, parallelism=2, completionMode="Indexed"),
          "-n", ns)
    cluster.kubectl("wait", "--for=condition=complete", "job/x", "-n", ns, "--timeout=60s",
                    timeout=70)
    pods = job_pods(cluster, ns, "x")
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                     for p in pods)
    assert indexes == ["0", "1", "2", "3"]
    assert {p["status"]["phase"] for p in pods} == {"Succeeded"}
    status = get_json(cluster, "job", "x", "-n", ns)["status"]
    assert status["completedIndexes"] == "0-3" and status["succeeded"] == 4


def start_long_job(cluster: Cluster, ns: str) -> set[str]:
    apply(cluster, job_manifest("x", exit_after=None, completions=2, parallelism=2), "-n", ns)
    pods = wait_for(lambda: len(r := live(job_pods(cluster, ns, "x"))) == 2 and r,
                    what="2 job pods")
    return {p["metadata"]["name"] for p in pods}


def test_delete_job_background_deletes_pods(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-bg")
    start_long_job(cluster, ns)
    cluster.kubectl("delete", "job", "x", "-n", ns, "--cascade=background")
    wait_for(lambda: not items(cluster, "pods", "-n", ns), what="pods deleted")


def test_delete_job_foreground_deletes_pods_before_the_job(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-fg")
    start_long_job(cluster, ns)
    # kubectl waits for the Job to be gone; foreground deletion removes the pods
    # (blockOwnerDeletion) before the Job itself.
    cluster.kubectl("delete", "job", "x", "-n", ns, "--cascade=foreground")
    assert items(cluster, "pods", "-n", ns) == []


def test_delete_job_orphan_keeps_pods(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-orph")
    names = start_long_job(cluster, ns)
    cluster.kubectl("delete", "job", "x", "-n", ns, "--cascade=orphan")
    time.sleep(1.5)
    pods = items(cluster, "pods", "-n", ns)
    assert {p["metadata"]["name"] for p in pods} == names
    assert all(not p["metadata"].get("ownerReferences") for p in pods)
    assert all(not p["metadata"].get("deletionTimestamp") for p in pods)


def test_orphaned_job_pods_lose_tracking_finalizer_and_can_be_deleted(
        cluster: Cluster) -> None:
    # Kubernetes' Job controller (syncOrphanPod) strips its tracking finalizer from
    # pods that no longer have a Job controller, so they can be deleted normally.
    ns = new_namespace(cluster, "job-orph2")
    names = start_long_job(cluster, ns)
    cluster.kubectl("delete", "job", "x", "-n", ns, "--cascade=orphan")
    wait_for(lambda: all(not p["metadata"].get("finalizers")
                         for p in items(cluster, "pods", "-n", ns)),
             timeout=5, what="tracking finalizers removed from orphans")
    cluster.kubectl("delete", "pod", *sorted(names), "-n", ns, "--timeout=10s")
    assert items(cluster, "pods", "-n", ns) == []


def test_kubectl_create_job(cluster: Cluster) -> None:
    ns = new_namespace(cluster, "job-create")
    cluster.kubectl("create", "job", "once", "--image=busybox:1.36", "-n", ns)
    wait_for(lambda: live(job_pods(cluster, ns, "once")), what="the job's pod")
