"""The scheduler's VolumeBinding with the PV binder, against a real API server: nodes,
volumes, claims and pods created through the API (the nodes are simulated: only their
names and labels matter here)."""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.client.client import Client
from pinnace.scheduler import Scheduler
from tests.integration.conftest import eventually
from tests.integration.test_pv_binder import NS, Storage, pv, pvc, start_binder
from tests.integration.test_scheduler import create_nodes, failure_message, node, node_of

NOT_HELPFUL = "preemption: 0/{n} nodes are available: {n} Preemption is not helpful for " \
    "scheduling."


def on_node(name: str) -> dict[str, Any]:
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [name]}]}]}}


def local_pv(name: str, node_name: str, size: str = "1Gi", cls: str = "local-storage"
             ) -> dict[str, Any]:
    body = pv(name, size, cls=cls, nodeAffinity=on_node(node_name))
    del body["spec"]["hostPath"]
    body["spec"]["local"] = {"path": f"/mnt/{name}"}
    return body


def pod(name: str, *claims: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                                 for i, c in enumerate(claims)], **spec}}


async def start(components: Any) -> None:
    await start_binder(components)
    await components.start(Scheduler(components.client, components.factory))


async def test_bound_local_volume_places_pod_on_its_node(client: Client,
                                                         components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("n1"), node("n2"), node("n3"))
    await client.create(s.pv_rt, local_pv("local-pv", "n2"))
    await client.create(s.pvc_rt, pvc("local-pvc", "256Mi", cls="local-storage"), NS)
    await start(components)
    await client.create(pods, pod("local-pod", "local-pvc"), NS)
    await eventually(lambda: _is(node_of(client, "local-pod"), "n2"))


async def test_volume_on_missing_node_keeps_pod_pending(client: Client,
                                                        components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("other"))
    await client.create(s.pv_rt, local_pv("local-pv", "node-1"))
    await client.create(s.pvc_rt, pvc("local-pvc", "256Mi", cls="local-storage"), NS)
    await start(components)
    await eventually(lambda: _is(s.claim_phase("local-pvc"), "Bound"))
    await client.create(pods, pod("local-pod", "local-pvc"), NS)
    assert await failure_message(client, "local-pod") == (
        "0/1 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity. "
        + NOT_HELPFUL.format(n=1))
    assert await node_of(client, "local-pod") is None


async def test_unbound_immediate_and_missing_claims(client: Client, components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("n1"), node("n2"))
    await start(components)
    await client.create(s.pvc_rt, pvc("waiting", "1Gi"), NS)
    await client.create(pods, pod("needs-volume", "waiting"), NS)
    await client.create(pods, pod("needs-claim", "ghost"), NS)
    assert await failure_message(client, "needs-volume") == (
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
        + NOT_HELPFUL.format(n=2))
    assert await failure_message(client, "needs-claim") == (
        '0/2 nodes are available: persistentvolumeclaim "ghost" not found. '
        + NOT_HELPFUL.format(n=2))
    # a volume appears: the claim binds, and the waiting pod is scheduled
    await client.create(s.pv_rt, pv("late-pv", "1Gi"))
    await eventually(lambda: _is(s.claim_phase("waiting"), "Bound"))

    async def scheduled() -> bool:
        return await node_of(client, "needs-volume") is not None
    await eventually(scheduled, within=20)


async def test_wait_for_first_consumer_static_volume(client: Client, components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("n1"), node("n2"))
    await client.create(s.sc_rt, {"metadata": {"name": "local-wffc"},
                                  "provisioner": "kubernetes.io/no-provisioner",
                                  "volumeBindingMode": "WaitForFirstConsumer"})
    await client.create(s.pv_rt, local_pv("pv-n1", "n1", cls="local-wffc"))
    await client.create(s.pv_rt, local_pv("pv-n2", "n2", cls="local-wffc"))
    await start(components)
    await client.create(s.pvc_rt, pvc("late-bound", "1Gi", cls="local-wffc"), NS)
    await eventually(lambda: _has_event(s, "late-bound", "WaitForFirstConsumer"))
    assert await s.claim_phase("late-bound") == "Pending"
    await client.create(pods, pod("consumer", "late-bound",
                                  nodeSelector={"kubernetes.io/hostname": "n2"}), NS)
    await eventually(lambda: _is(node_of(client, "consumer"), "n2"))
    claim = await s.pvc("late-bound")
    assert claim is not None
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == "pv-n2"
    assert await s.volume_phase("pv-n1") == "Available"
    # no volume left that n1 can use: a second claim's pod there says so
    await client.create(s.pvc_rt, pvc("second", "1Gi", cls="local-wffc"), NS)
    await client.create(pods, pod("consumer2", "second",
                                  nodeSelector={"kubernetes.io/hostname": "n2"}), NS)
    assert await failure_message(client, "consumer2") == (
        "0/2 nodes are available: 1 node(s) didn't find available persistent volumes to "
        "bind, 1 node(s) didn't match Pod's node affinity/selector. "
        + NOT_HELPFUL.format(n=2))


async def test_wait_for_first_consumer_provisioning(client: Client, components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("n1"), node("n2"))
    await client.create(s.sc_rt, {"metadata": {"name": "dyn"},
                                  "provisioner": "example.com/dyn",
                                  "volumeBindingMode": "WaitForFirstConsumer"})
    await start(components)
    await client.create(s.pvc_rt, pvc("data", "2Gi", cls="dyn"), NS)
    await client.create(pods, pod("app", "data",
                                  nodeSelector={"kubernetes.io/hostname": "n1"}), NS)

    async def selected() -> bool:
        c = await s.pvc("data")
        return (c or {})["metadata"].get("annotations", {}).get(
            "volume.kubernetes.io/selected-node") == "n1"
    await eventually(selected)
    # the pod is not bound to the node until its claim is
    await asyncio.sleep(0.2)
    assert await node_of(client, "app") is None
    # play the provisioner: a volume pre-bound to the claim, on the selected node
    claim = await s.pvc("data")
    assert claim is not None
    uid = claim["metadata"]["uid"]
    await eventually(lambda: _has_event(s, "data", "ExternalProvisioning"))
    volume = local_pv(f"pvc-{uid}", "n1", "2Gi", cls="dyn")
    volume["spec"]["claimRef"] = {"namespace": NS, "name": "data", "uid": uid}
    volume["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": "example.com/dyn"}
    await client.create(s.pv_rt, volume)
    await eventually(lambda: _is(node_of(client, "app"), "n1"))
    assert (await s.pvc("data") or {})["spec"]["volumeName"] == f"pvc-{uid}"


async def test_read_write_once_pod(client: Client, components: Any) -> None:
    s = Storage(client)
    pods = client.resource("v1", "Pod")
    await create_nodes(client, node("n1"))
    await client.create(s.pv_rt, pv("solo", "1Gi", modes=("ReadWriteOncePod",)))
    await start(components)
    await client.create(s.pvc_rt, pvc("solo", "1Gi", modes=("ReadWriteOncePod",)), NS)
    await eventually(lambda: _is(s.claim_phase("solo"), "Bound"))
    await client.create(pods, pod("first", "solo"), NS)
    await eventually(lambda: _is(node_of(client, "first"), "n1"))
    await client.create(pods, pod("second", "solo"), NS)
    assert await failure_message(client, "second") == (
        "0/1 nodes are available: node has pod using PersistentVolumeClaim with the same "
        "name and ReadWriteOncePod access mode. " + NOT_HELPFUL.format(n=1))


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _has_event(s: Storage, name: str, reason: str) -> bool:
    return any(r == reason for _, r, _ in await s.events(name))
