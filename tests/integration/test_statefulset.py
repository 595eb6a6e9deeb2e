"""The StatefulSet controller against a real API server; the test plays the node (it marks
pods Running and Ready itself, so it decides when each pod is ready)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pinnace.api.errors import ApiError
from pinnace.client.client import Client
from pinnace.controllers import _history as history
from pinnace.controllers.garbage_collector import GarbageCollector
from pinnace.controllers.pv_protection import PVCProtectionController
from pinnace.controllers.statefulset import StatefulSetController
from tests.integration.conftest import Api, Components, eventually, run_kubectl
from tests.integration.fake_kubelet import mark_ready

NS = "default"


@pytest.fixture
async def controllers(client: Client, components: Components) -> None:
    await components.start(StatefulSetController(client, components.factory),
                           GarbageCollector(client, components.factory),
                           # claims carry its finalizer from admission: it lets them go
                           PVCProtectionController(client, components.factory))


def statefulset(name: str = "web", replicas: int = 3, image: str = "nginx:1",
                claims: bool = True, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              # bound to a node as if scheduled: deleting it is graceful
                              "spec": {"nodeName": "node-a",
                                       "containers": [{"name": "c", "image": image}]}},
                 **spec}}
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


class Sts:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.sts = client.resource("apps/v1", "StatefulSet")
        self.pods = client.resource("v1", "Pod")
        self.pvcs = client.resource("v1", "PersistentVolumeClaim")
        self.crs = client.resource("apps/v1", "ControllerRevision")

    async def get(self, name: str = "web") -> dict[str, Any]:
        return await self.client.get(self.sts, name, NS)

    async def pod_list(self) -> list[dict[str, Any]]:
        return (await self.client.list(self.pods, NS))["items"]

    async def live(self) -> dict[str, dict[str, Any]]:
        """Pods not being deleted, by name."""
        return {p["metadata"]["name"]: p for p in await self.pod_list()
                if not p["metadata"].get("deletionTimestamp")}

    async def names(self) -> list[str]:
        return sorted(await self.live())

    async def claim_names(self) -> list[str]:
        return sorted(c["metadata"]["name"]
                      for c in (await self.client.list(self.pvcs, NS))["items"])

    async def ready(self, name: str) -> None:
        await mark_ready(self.client, await self.client.get(self.pods, name, NS))

    async def finish_deletions(self) -> None:
        """What a node does with pods being deleted: they are gone once stopped."""
        for p in await self.pod_list():
            if p["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(Exception):
                    await self.client.delete(self.pods, p["metadata"]["name"], NS,
                                             grace_period_seconds=0)

    async def status(self, **want: Any) -> bool:
        st = (await self.get()).get("status") or {}
        return all(st.get(k) == v for k, v in want.items())


@pytest.fixture
def sts(client: Client) -> Sts:
    return Sts(client)


@contextlib.asynccontextmanager
async def node(s: Sts) -> AsyncIterator[None]:
    """A node that makes every pod ready and finishes every deletion, all the time."""
    async def loop() -> None:
        while True:
            for p in await s.pod_list():
                if p["metadata"].get("deletionTimestamp"):
                    with contextlib.suppress(Exception):
                        await s.client.delete(s.pods, p["metadata"]["name"], NS,
                                              grace_period_seconds=0)
                elif (p.get("status") or {}).get("phase") != "Running":
                    await mark_ready(s.client, p)
            await asyncio.sleep(0.02)
    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_ordered_ready_creates_in_order_with_identity_and_claims(
        sts: Sts, controllers: None) -> None:
    await sts.client.create(sts.sts, statefulset(), NS)
    for i in range(3):
        await eventually(lambda i=i: _names_are(sts, [f"web-{j}" for j in range(i + 1)]))
        await asyncio.sleep(0.2)  # no further pod while this one is not ready
        assert await sts.names() == [f"web-{j}" for j in range(i + 1)]
        await sts.ready(f"web-{i}")
    await eventually(lambda: sts.status(replicas=3, readyReplicas=3, availableReplicas=3,
                                        currentReplicas=3, updatedReplicas=3,
                                        observedGeneration=1, collisionCount=0))
    st = (await sts.get())["status"]
    assert st["currentRevision"] == st["updateRevision"]
    assert st["updateRevision"].startswith("web-")

    pod = (await sts.live())["web-1"]
    assert pod["spec"]["hostname"] == "web-1"
    assert pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"] == st["updateRevision"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in \
        pod["spec"]["volumes"]
    assert await sts.claim_names() == ["data-web-0", "data-web-1", "data-web-2"]
    claim = await sts.client.get(sts.pvcs, "data-web-1", NS)
    assert claim["metadata"]["labels"] == {"app": "web"}
    assert not claim["metadata"].get("ownerReferences")  # Retain/Retain: nobody owns it

    events = (await sts.client.list(sts.client.resource("v1", "Event"), NS))["items"]
    messages = {(e["reason"], e["message"]) for e in events
                if e["involvedObject"]["name"] == "web"}
    assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in messages
    assert ("SuccessfulCreate", "create Claim data-web-0 Pod web-0 in StatefulSet web success") \
        in messages

    # a deleted pod comes back under its name, with the same claim
    old_uid = pod["metadata"]["uid"]
    await sts.client.delete(sts.pods, "web-1", NS, grace_period_seconds=0)
    await eventually(lambda: _recreated(sts, "web-1", old_uid))
    assert await sts.claim_names() == ["data-web-0", "data-web-1", "data-web-2"]


async def _names_are(sts: Sts, names: list[str]) -> bool:
    return await sts.names() == names


async def _recreated(sts: Sts, name: str, old_uid: str) -> bool:
    pod = (await sts.live()).get(name)
    return pod is not None and pod["metadata"]["uid"] != old_uid


async def test_scale_down_removes_highest_first_and_keeps_claims(
        sts: Sts, controllers: None) -> None:
    async with node(sts):
        await sts.client.create(sts.sts, statefulset(replicas=3), NS)
        await eventually(lambda: sts.status(readyReplicas=3))
    # scaled down with the node stopped: web-2 goes first, web-1 waits for it
    await sts.client.patch(sts.sts, "web", {"spec": {"replicas": 1}}, namespace=NS)
    await eventually(lambda: _terminating(sts, ["web-2"]))
    await asyncio.sleep(0.2)
    assert await _terminating(sts, ["web-2"])
    await sts.finish_deletions()
    await eventually(lambda: _terminating(sts, ["web-1"]))
    await sts.finish_deletions()
    await eventually(lambda: sts.status(replicas=1, readyReplicas=1))
    assert await sts.names() == ["web-0"]
    assert await sts.claim_names() == ["data-web-0", "data-web-1", "data-web-2"]
    async with node(sts):  # scaling up again reuses the kept claims
        await sts.client.patch(sts.sts, "web", {"spec": {"replicas": 2}}, namespace=NS)
        await eventually(lambda: sts.status(replicas=2, readyReplicas=2))
    assert await sts.claim_names() == ["data-web-0", "data-web-1", "data-web-2"]


async def _terminating(sts: Sts, names: list[str]) -> bool:
    return sorted(p["metadata"]["name"] for p in await sts.pod_list()
                  if p["metadata"].get("deletionTimestamp")) == names


async def test_parallel_creates_and_deletes_all_at_once(sts: Sts, controllers: None) -> None:
    await sts.client.create(sts.sts, statefulset(replicas=4, podManagementPolicy="Parallel",
                                                 claims=False), NS)
    await eventually(lambda: _names_are(sts, ["web-0", "web-1", "web-2", "web-3"]))
    await sts.client.patch(sts.sts, "web", {"spec": {"replicas": 1}}, namespace=NS)
    await eventually(lambda: _terminating(sts, ["web-1", "web-2", "web-3"]))


async def test_rolling_update_in_reverse_order_with_partition_then_undo(
        sts: Sts, controllers: None, api: Api) -> None:
    deleted: list[str] = []
    async with node(sts):
        await sts.client.create(sts.sts, statefulset(
            replicas=3, claims=False,
            updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}), NS)
        await eventually(lambda: sts.status(readyReplicas=3, updatedReplicas=3))
        first = (await sts.get())["status"]["updateRevision"]
        watcher = asyncio.create_task(_record_deletions(sts, deleted))
        await sts.client.patch(sts.sts, "web", {"spec": {"template": {"spec": {
            "nodeName": "node-a", "containers": [{"name": "c", "image": "nginx:2"}]}}}},
            namespace=NS)
        await eventually(lambda: sts.status(updatedReplicas=2, readyReplicas=3, replicas=3,
                                            currentReplicas=1, observedGeneration=2))
        watcher.cancel()
        st = (await sts.get())["status"]
        assert st["currentRevision"] == first != st["updateRevision"]
        images = {n: p["spec"]["containers"][0]["image"] for n, p in (await sts.live()).items()}
        assert images == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:2"}
        assert deleted == ["web-2", "web-1"]  # highest ordinal first, partition kept
        second = st["updateRevision"]

        # partition 0: the last one follows and the rollout completes
        await sts.client.patch(sts.sts, "web", {"spec": {"updateStrategy": {
            "rollingUpdate": {"partition": 0}}}}, namespace=NS)
        await eventually(lambda: sts.status(updatedReplicas=3, currentReplicas=3,
                                            currentRevision=second, updateRevision=second))
        kubeconfig = api.server.write_kubeconfig()
        rc, out, err = await run_kubectl(kubeconfig, "rollout", "status", "sts/web",
                                         "--timeout=20s")
        assert rc == 0, err
        assert "partitioned roll out complete: 3 new pods have been updated" in out
        rc, out, err = await run_kubectl(kubeconfig, "rollout", "history", "sts/web")
        assert rc == 0, err
        assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["1", "2"]
        rc, out, err = await run_kubectl(kubeconfig, "rollout", "history", "sts/web",
                                         "--revision=1")
        assert rc == 0, err
        assert out.startswith("statefulset.apps/web with revision #1")
        assert "Image:\tnginx:1" in out, out
        rc, out, err = await run_kubectl(kubeconfig, "describe", "sts", "web")
        assert rc == 0, err
        assert "Pods Status:" in out and "3 Running" in out, out

        # undo: kubectl patches the previous revision's template back; that revision
        # becomes number 3, no new one is made
        rc, out, err = await run_kubectl(kubeconfig, "rollout", "undo", "sts/web")
        assert rc == 0, err
        await eventually(lambda: sts.status(updateRevision=first, currentRevision=first,
                                            updatedReplicas=3, readyReplicas=3))
    images = {n: p["spec"]["containers"][0]["image"] for n, p in (await sts.live()).items()}
    assert images == {"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:1"}
    revisions = {r["metadata"]["name"]: r["revision"]
                 for r in (await sts.client.list(sts.crs, NS))["items"]}
    assert revisions == {first: 3, second: 2}
    rc, out, err = await run_kubectl(kubeconfig, "get", "controllerrevisions")
    assert rc == 0, err
    assert f"{first}   statefulset.apps/web   3" in out


async def _record_deletions(sts: Sts, deleted: list[str]) -> None:
    seen: set[str] = set()
    while True:
        for p in await sts.pod_list():
            if p["metadata"].get("deletionTimestamp") and p["metadata"]["uid"] not in seen:
                seen.add(p["metadata"]["uid"])
                deleted.append(p["metadata"]["name"])
        await asyncio.sleep(0.005)


async def test_on_delete_updates_only_pods_deleted_by_someone(sts: Sts,
                                                              controllers: None) -> None:
    async with node(sts):
        await sts.client.create(sts.sts, statefulset(
            replicas=2, claims=False, updateStrategy={"type": "OnDelete"}), NS)
        await eventually(lambda: sts.status(readyReplicas=2))
        await sts.client.patch(sts.sts, "web", {"spec": {"template": {"spec": {
            "nodeName": "node-a", "containers": [{"name": "c", "image": "nginx:2"}]}}}},
            namespace=NS)
        await eventually(lambda: sts.status(observedGeneration=2, updatedReplicas=0))
        await asyncio.sleep(0.3)
        images = {n: p["spec"]["containers"][0]["image"] for n, p in (await sts.live()).items()}
        assert images == {"web-0": "nginx:1", "web-1": "nginx:1"}
        await sts.client.delete(sts.pods, "web-1", NS)
        await eventually(lambda: sts.status(updatedReplicas=1, readyReplicas=2))
    images = {n: p["spec"]["containers"][0]["image"] for n, p in (await sts.live()).items()}
    assert images == {"web-0": "nginx:1", "web-1": "nginx:2"}


@pytest.mark.parametrize(("policy", "kept_after_scale", "kept_after_delete"), [
    ({"whenDeleted": "Retain", "whenScaled": "Retain"}, ["data-web-0", "data-web-1"],
     ["data-web-0", "data-web-1"]),
    ({"whenDeleted": "Delete", "whenScaled": "Retain"}, ["data-web-0", "data-web-1"],
     []),
    ({"whenDeleted": "Retain", "whenScaled": "Delete"}, ["data-web-0"], ["data-web-0"]),
    ({"whenDeleted": "Delete", "whenScaled": "Delete"}, ["data-web-0"], []),
])
async def test_claims_follow_the_retention_policy(
        sts: Sts, controllers: None, policy: dict[str, str], kept_after_scale: list[str],
        kept_after_delete: list[str]) -> None:
    async with node(sts):
        await sts.client.create(sts.sts, statefulset(
            replicas=2, persistentVolumeClaimRetentionPolicy=policy), NS)
        await eventually(lambda: sts.status(readyReplicas=2))
        owners = [r["kind"] for r in (await sts.client.get(sts.pvcs, "data-web-1", NS))[
            "metadata"].get("ownerReferences") or []]
        assert owners == (["StatefulSet"] if policy["whenDeleted"] == "Delete" else [])
        await sts.client.patch(sts.sts, "web", {"spec": {"replicas": 1}}, namespace=NS)
        await eventually(lambda: _names_are(sts, ["web-0"]))
        await eventually(lambda: _claims_are(sts, kept_after_scale))
        await sts.client.delete(sts.sts, "web", NS, propagation_policy="Background")
        await eventually(lambda: _names_are(sts, []))
        await eventually(lambda: _claims_are(sts, kept_after_delete))


async def _claims_are(sts: Sts, names: list[str]) -> bool:
    return await sts.claim_names() == names


async def test_bad_statefulset_is_refused_with_the_field(sts: Sts) -> None:
    body = statefulset()
    body["spec"]["podManagementPolicy"] = "Sometimes"
    with pytest.raises(ApiError) as e:
        await sts.client.create(sts.sts, body, NS)
    assert e.value.code == 422
    assert "spec.podManagementPolicy" in json.dumps(e.value.status())


async def test_an_orphan_of_a_member_name_is_adopted_and_given_its_identity(
        sts: Sts, controllers: None) -> None:
    orphan = await sts.client.create(sts.pods, {
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx:1"}]}}, NS)
    async with node(sts):
        # OnDelete: a rolling update would replace it, having no revision label
        await sts.client.create(sts.sts, statefulset(replicas=2, claims=False,
                                                     updateStrategy={"type": "OnDelete"}), NS)
        await eventually(lambda: sts.status(replicas=2, readyReplicas=2, updatedReplicas=1))
    adopted = await sts.client.get(sts.pods, "web-0", NS)
    assert adopted["metadata"]["uid"] == orphan["metadata"]["uid"]
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "web"
    assert adopted["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert adopted["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"


async def test_a_revision_name_taken_by_other_data_raises_the_collision_count(
        sts: Sts, components: Components) -> None:
    created = await sts.client.create(sts.sts, statefulset(replicas=1, claims=False), NS)
    data = history.revision_data(created["spec"]["template"])
    taken = history.revision_name(created, data, 0)
    await sts.client.create(sts.crs, {"metadata": {"name": taken}, "revision": 1,
                                      "data": {"spec": {"template": {"$patch": "replace"}}}}, NS)
    await components.start(StatefulSetController(sts.client, components.factory))
    await eventually(lambda: sts.status(collisionCount=1,
                                        updateRevision=history.revision_name(created, data, 1)))
    pod = (await sts.live())["web-0"]
    assert pod["metadata"]["labels"]["controller-revision-hash"] == \
        history.revision_name(created, data, 1)
