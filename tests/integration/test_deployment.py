"""The Deployment and ReplicaSet controllers together against a real API server;
the test plays the node (pods become Running and Ready soon after they appear)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pinnace.client.client import Client
from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.replicaset import ReplicaSetController
from tests.integration.conftest import Components, eventually

NS = "default"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
async def controllers(client: Client, components: Components) -> None:
    await components.start(DeploymentController(client, components.factory),
                           ReplicaSetController(client, components.factory))


def deployment(name: str = "web", replicas: int = 4, image: str = "nginx:1",
               strategy: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                         "maxSurge": 1, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}


def rolled_out(d: dict[str, Any]) -> bool:
    """`kubectl rollout status`'s test."""
    st = d.get("status") or {}
    return st.get("observedGeneration", 0) >= d["metadata"]["generation"] and \
        st.get("updatedReplicas", 0) >= d["spec"]["replicas"] and \
        st.get("replicas", 0) <= st.get("updatedReplicas", 0) and \
        st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0)


def condition(d: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (d.get("status") or {}).get("conditions") or []
                 if c["type"] == type_), {})


class Api:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.d = client.resource("apps/v1", "Deployment")
        self.rs = client.resource("apps/v1", "ReplicaSet")
        self.pods = client.resource("v1", "Pod")

    async def deployment(self, name: str = "web") -> dict[str, Any]:
        return await self.client.get(self.d, name, NS)

    async def replicasets(self) -> list[dict[str, Any]]:
        return (await self.client.list(self.rs, NS))["items"]

    async def pods_of(self, app: str = "web") -> list[dict[str, Any]]:
        items = (await self.client.list(self.pods, NS, label_selector=f"app={app}"))["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    async def wait_rolled_out(self, name: str = "web", image: str | None = None) -> None:
        async def done() -> bool:
            d = await self.deployment(name)
            if not rolled_out(d):
                return False
            pods = await self.pods_of(name)
            return len(pods) == d["spec"]["replicas"] and (image is None or all(
                p["spec"]["containers"][0]["image"] == image for p in pods))
        await eventually(done, within=15)

    async def set_image(self, image: str, name: str = "web") -> None:
        # what `kubectl set image` sends
        await self.client.patch(self.d, name, {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": image}]}}}}, namespace=NS,
            patch_type="strategic")


@contextlib.asynccontextmanager
async def watching_pods(client: Client, check: Callable[[dict[str, dict[str, Any]]], None]
                        ) -> AsyncIterator[list[str]]:
    """Run check(pods by name) after every pod event; failures are collected."""
    pods_rt = client.resource("v1", "Pod")
    listed = await client.list(pods_rt, NS)
    pods = {p["metadata"]["name"]: p for p in listed["items"]}
    failures: list[str] = []

    async def run() -> None:
        async for ev_type, pod in client.watch(pods_rt, NS,
                                               resource_version=listed["metadata"][
                                                   "resourceVersion"]):
            if ev_type == "BOOKMARK":
                continue
            if ev_type == "DELETED":
                pods.pop(pod["metadata"]["name"], None)
            else:
                pods[pod["metadata"]["name"]] = pod
            try:
                check(pods)
            except AssertionError as e:
                failures.append(str(e))

    task = asyncio.create_task(run())
    try:
        yield failures
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def is_ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or [])


async def test_creates_replicaset_and_pods(client: Client, controllers: None,
                                           ready_node: None) -> None:
    api = Api(client)
    d = await client.create(api.d, deployment(replicas=3), NS)
    await api.wait_rolled_out()
    [rs] = await api.replicasets()
    pod_hash = rs["spec"]["selector"]["matchLabels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}" and 9 <= len(pod_hash) <= 10
    assert set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["annotations"][REVISION] == "1"
    d = await api.deployment()
    assert d["metadata"]["annotations"][REVISION] == "1"
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"]) == (3, 3, 3, 3)
    assert st.get("unavailableReplicas", 0) == 0
    avail, prog = condition(d, "Available"), condition(d, "Progressing")
    assert (avail["status"], avail["reason"], avail["message"]) == (
        "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    assert (prog["status"], prog["reason"], prog["message"]) == (
        "True", "NewReplicaSetAvailable",
        f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.')
    for pod in await api.pods_of():
        assert pod["metadata"]["labels"]["pod-template-hash"] == pod_hash


async def test_rolling_update_respects_surge_and_unavailability(
        client: Client, controllers: None, ready_node: None) -> None:
    api = Api(client)
    await client.create(api.d, deployment(replicas=4), NS)  # maxSurge 1, maxUnavailable 1
    await api.wait_rolled_out()
    seen = {"max": 0, "min_ready": 99}

    def check(pods: dict[str, dict[str, Any]]) -> None:
        mine = [p for p in pods.values() if p["metadata"]["labels"].get("app") == "web"]
        ready = sum(1 for p in mine if is_ready(p))
        seen["max"] = max(seen["max"], len(mine))
        seen["min_ready"] = min(seen["min_ready"], ready)
        assert len(mine) <= 4 + 1, f"{len(mine)} pods exist"
        assert ready >= 4 - 1, f"only {ready} pods available"

    async with watching_pods(client, check) as failures:
        await api.set_image("nginx:2")
        await api.wait_rolled_out(image="nginx:2")
    assert failures == []
    assert seen["max"] == 5 and seen["min_ready"] == 3  # it did use its budget
    rss = {rs["metadata"]["annotations"][REVISION]: rs for rs in await api.replicasets()}
    assert rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == 4
    assert (await api.deployment())["metadata"]["annotations"][REVISION] == "2"


async def test_undo_revives_the_previous_replicaset(client: Client, controllers: None,
                                                    ready_node: None) -> None:
    api = Api(client)
    await client.create(api.d, deployment(replicas=2), NS)
    await api.wait_rolled_out()
    first = (await api.replicasets())[0]
    await api.set_image("nginx:2")
    await api.wait_rolled_out(image="nginx:2")
    # what `kubectl rollout undo` (1.32) sends: a JSON patch putting the previous
    # revision's template (without its hash label) and annotations back
    previous = next(rs for rs in await api.replicasets()
                    if rs["metadata"]["annotations"][REVISION] == "1")
    template = previous["spec"]["template"]
    del template["metadata"]["labels"]["pod-template-hash"]
    d = await api.deployment()
    keep = {"deployment.kubernetes.io/revision"}
    annotations = {k: v for k, v in d["metadata"]["annotations"].items() if k in keep}
    annotations.update({k: v for k, v in previous["metadata"]["annotations"].items()
                        if not k.startswith("deployment.kubernetes.io/")})
    await client.patch(api.d, "web", [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations}],
        namespace=NS, patch_type="json")
    await api.wait_rolled_out(image="nginx:1")
    rss = await api.replicasets()
    assert len(rss) == 2  # the old ReplicaSet came back; none was created
    revived = next(rs for rs in rss if rs["metadata"]["name"] == first["metadata"]["name"])
    assert revived["spec"]["replicas"] == 2
    assert revived["metadata"]["annotations"][REVISION] == "3"
    assert revived["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert (await api.deployment())["metadata"]["annotations"][REVISION] == "3"


async def test_pause_stops_the_rollout_and_resume_continues(client: Client, controllers: None,
                                                            ready_node: None) -> None:
    api = Api(client)
    await client.create(api.d, deployment(replicas=2), NS)
    await api.wait_rolled_out()
    await client.patch(api.d, "web", {"spec": {"paused": True}}, namespace=NS)
    await api.set_image("nginx:2")

    async def paused() -> bool:
        d = await api.deployment()
        prog = condition(d, "Progressing")
        return d["status"].get("observedGeneration") == d["metadata"]["generation"] and \
            (prog.get("status"), prog.get("reason"), prog.get("message")) == (
                "Unknown", "DeploymentPaused", "Deployment is paused")
    await eventually(paused)
    await asyncio.sleep(0.3)
    assert len(await api.replicasets()) == 1
    assert {p["spec"]["containers"][0]["image"] for p in await api.pods_of()} == {"nginx:1"}
    await client.patch(api.d, "web", {"spec": {"paused": False}}, namespace=NS)
    await api.wait_rolled_out(image="nginx:2")
    assert len(await api.replicasets()) == 2


async def test_recreate_deletes_old_pods_before_creating_new(client: Client,
                                                             controllers: None,
                                                             ready_node: None) -> None:
    api = Api(client)
    await client.create(api.d, deployment(replicas=3, strategy={"type": "Recreate"}), NS)
    await api.wait_rolled_out()

    def check(pods: dict[str, dict[str, Any]]) -> None:
        images = {p["spec"]["containers"][0]["image"] for p in pods.values()}
        assert images != {"nginx:1", "nginx:2"}, "old and new pods at once"

    async with watching_pods(client, check) as failures:
        await api.set_image("nginx:2")
        await api.wait_rolled_out(image="nginx:2")
    assert failures == []


async def test_scaling_resizes_the_replicasets(client: Client, controllers: None,
                                               ready_node: None) -> None:
    api = Api(client)
    await client.create(api.d, deployment(replicas=2), NS)
    await api.wait_rolled_out()
    await client.patch(api.d, "web", {"spec": {"replicas": 5}}, namespace=NS,
                       subresource="scale")
    await api.wait_rolled_out()
    assert len(await api.pods_of()) == 5
    [rs] = await api.replicasets()
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    await client.patch(api.d, "web", {"spec": {"replicas": 1}}, namespace=NS,
                       subresource="scale")
    await api.wait_rolled_out()
    assert len(await api.pods_of()) == 1


async def test_progress_deadline_exceeded(client: Client, controllers: None) -> None:
    api = Api(client)  # no node: pods never become ready
    await client.create(api.d, deployment(
        replicas=1, progressDeadlineSeconds=1, strategy={
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        NS)

    async def timed_out() -> bool:
        d = await api.deployment()
        prog, avail = condition(d, "Progressing"), condition(d, "Available")
        return (prog.get("status"), prog.get("reason")) == ("False",
                                                            "ProgressDeadlineExceeded") and \
            avail.get("reason") == "MinimumReplicasUnavailable"
    await eventually(timed_out, within=8)
    rs = (await api.replicasets())[0]["metadata"]["name"]
    assert condition(await api.deployment(), "Progressing")["message"] == \
        f'ReplicaSet "{rs}" has timed out progressing.'
