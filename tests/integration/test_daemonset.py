"""The DaemonSet controller against a real API server: one pod per eligible node."""

from __future__ import annotations

from typing import Any

from pinnace.client.client import Client
from pinnace.controllers.daemonset import DaemonSetController
from pinnace.controllers.garbage_collector import GarbageCollector
from pinnace.controllers.pod_gc import PodGCController
from tests.integration.conftest import Components, eventually

NS = "default"


async def add_node(client: Client, name: str, *, labels: dict[str, str] | None = None,
                   taints: list[dict[str, Any]] | None = None) -> None:
    nodes = client.resource("v1", "Node")
    node: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}}
    if taints:
        node["spec"]["taints"] = taints
    created = await client.create(nodes, node)
    created["status"] = {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}]}
    await client.update_status(nodes, created)


def daemonset(name: str, **spec: Any) -> dict[str, Any]:
    pod_spec = {"containers": [{"name": "agent", "image": "busybox"}], **spec.pop("pod", {})}
    return {"metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
                     **spec}}


async def ds_pods(client: Client, name: str) -> list[dict[str, Any]]:
    pods = await client.list(client.resource("v1", "Pod"), NS, label_selector=f"app={name}")
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def target_node(pod: dict[str, Any]) -> str:
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 1
    assert terms[0]["matchFields"][0]["key"] == "metadata.name"
    assert terms[0]["matchFields"][0]["operator"] == "In"
    return terms[0]["matchFields"][0]["values"][0]


async def set_ready(client: Client, pod: dict[str, Any]) -> None:
    """What a node agent would report for a running, ready pod."""
    pods = client.resource("v1", "Pod")
    pod = await client.get(pods, pod["metadata"]["name"], NS)
    pod["status"] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "containerStatuses": [{"name": "agent", "ready": True, "restartCount": 0,
                               "image": "busybox", "imageID": "", "started": True,
                               "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    await client.update_status(pods, pod)


async def nodes_of(client: Client, name: str) -> list[str]:
    return sorted(target_node(p) for p in await ds_pods(client, name))


async def test_one_pod_per_node_follows_nodes(client: Client, components: Components) -> None:
    for n in ("n1", "n2", "n3"):
        await add_node(client, n)
    ds_rt = client.resource("apps/v1", "DaemonSet")
    await components.start(DaemonSetController(client, components.factory),
                           GarbageCollector(client, components.factory),
                           PodGCController(client, components.factory))
    await client.create(ds_rt, daemonset("logs"), NS)

    async def on(nodes: list[str]) -> bool:
        return await nodes_of(client, "logs") == nodes
    await eventually(lambda: on(["n1", "n2", "n3"]))
    pod = (await ds_pods(client, "logs"))[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert pod["metadata"]["labels"]["controller-revision-hash"]
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys

    async def status_is(**want: int) -> bool:
        st = (await client.get(ds_rt, "logs", NS)).get("status") or {}
        return all(st.get(k) == v for k, v in want.items())
    await eventually(lambda: status_is(desiredNumberScheduled=3, currentNumberScheduled=3,
                                       numberReady=0, updatedNumberScheduled=3,
                                       numberMisscheduled=0, observedGeneration=1))
    revisions = await client.list(client.resource("apps/v1", "ControllerRevision"), NS)
    assert [r["revision"] for r in revisions["items"]] == [1]

    await add_node(client, "n4")
    await eventually(lambda: on(["n1", "n2", "n3", "n4"]))
    await client.delete(client.resource("v1", "Node"), "n2")
    await eventually(lambda: on(["n1", "n3", "n4"]))

    for p in await ds_pods(client, "logs"):
        await set_ready(client, p)
    await eventually(lambda: status_is(desiredNumberScheduled=3, numberReady=3,
                                       numberAvailable=3))

    # Background deletion: the garbage collector removes the pods
    await client.delete(ds_rt, "logs", NS, propagation_policy="Background")
    await eventually(lambda: on([]))


async def test_node_selector_taints_and_label_changes(client: Client,
                                                      components: Components) -> None:
    await add_node(client, "a", labels={"disk": "ssd"})
    await add_node(client, "b", labels={"disk": "hdd"})
    await add_node(client, "c", labels={"disk": "ssd"},
                   taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await add_node(client, "d", labels={"disk": "ssd"},
                   taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    await components.start(DaemonSetController(client, components.factory))
    ds_rt = client.resource("apps/v1", "DaemonSet")
    await client.create(ds_rt, daemonset("ssd", pod={"nodeSelector": {"disk": "ssd"}}), NS)

    async def on(nodes: list[str]) -> bool:
        return await nodes_of(client, "ssd") == nodes
    # c's taint is not tolerated; d's unschedulable taint is, for daemon pods
    await eventually(lambda: on(["a", "d"]))
    await client.patch(client.resource("v1", "Node"), "a",
                       {"metadata": {"labels": {"disk": "hdd"}}})
    await eventually(lambda: on(["d"]))
    await client.patch(client.resource("v1", "Node"), "b",
                       {"metadata": {"labels": {"disk": "ssd"}}})
    await eventually(lambda: on(["b", "d"]))


async def test_rolling_update_replaces_pods_one_at_a_time(client: Client,
                                                          components: Components) -> None:
    for n in ("n1", "n2", "n3"):
        await add_node(client, n)
    await components.start(DaemonSetController(client, components.factory))
    ds_rt = client.resource("apps/v1", "DaemonSet")
    await client.create(ds_rt, daemonset("web"), NS)
    await eventually(lambda: nodes_of_eq(client, "web", 3))
    first = {p["metadata"]["labels"]["controller-revision-hash"]
             for p in await ds_pods(client, "web")}
    for p in await ds_pods(client, "web"):
        await set_ready(client, p)

    await client.patch(ds_rt, "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "agent", "image": "busybox:2"}]}}}}, namespace=NS)
    seen_unavailable: list[int] = []

    async def rolled() -> bool:
        pods = await ds_pods(client, "web")
        # act as the node agents: every new pod becomes ready
        for p in pods:
            if not (p.get("status") or {}).get("conditions"):
                await set_ready(client, p)
        ready = [p for p in pods if (p.get("status") or {}).get("conditions")]
        seen_unavailable.append(3 - len(ready))
        hashes = {p["metadata"]["labels"]["controller-revision-hash"] for p in pods}
        return len(pods) == 3 and not hashes & first
    await eventually(rolled, within=15)
    assert max(seen_unavailable) <= 1
    revisions = await client.list(client.resource("apps/v1", "ControllerRevision"), NS)
    assert sorted(r["revision"] for r in revisions["items"]) == [1, 2]
    st = (await client.get(ds_rt, "web", NS))["status"]
    assert st["observedGeneration"] == 2


async def test_on_delete_keeps_old_pods(client: Client, components: Components) -> None:
    await add_node(client, "n1")
    await components.start(DaemonSetController(client, components.factory))
    ds_rt = client.resource("apps/v1", "DaemonSet")
    await client.create(ds_rt, daemonset("od", updateStrategy={"type": "OnDelete"}), NS)
    await eventually(lambda: nodes_of_eq(client, "od", 1))
    old = (await ds_pods(client, "od"))[0]
    await client.patch(ds_rt, "od", {"spec": {"template": {"metadata": {
        "labels": {"app": "od", "v": "2"}}}}}, namespace=NS)

    async def updated_is(n: int) -> bool:
        st = (await client.get(ds_rt, "od", NS)).get("status") or {}
        return st.get("observedGeneration") == 2 and st.get("updatedNumberScheduled") == n
    await eventually(lambda: updated_is(0))
    assert [p["metadata"]["uid"] for p in await ds_pods(client, "od")] == \
        [old["metadata"]["uid"]]
    await client.delete(client.resource("v1", "Pod"), old["metadata"]["name"], NS)
    await eventually(lambda: updated_is(1))


async def nodes_of_eq(client: Client, name: str, n: int) -> bool:
    return len(await ds_pods(client, name)) == n


async def test_no_execute_taint_evicts_daemon_pod(client: Client,
                                                  components: Components) -> None:
    await add_node(client, "n1")
    await add_node(client, "n2")
    await components.start(DaemonSetController(client, components.factory))
    await client.create(client.resource("apps/v1", "DaemonSet"), daemonset("ne"), NS)

    async def on(nodes: list[str]) -> bool:
        return await nodes_of(client, "ne") == nodes
    await eventually(lambda: on(["n1", "n2"]))
    # NoSchedule keeps the running pod; NoExecute removes it
    await client.patch(client.resource("v1", "Node"), "n1", {"spec": {"taints": [
        {"key": "maintenance", "effect": "NoSchedule"}]}})
    await client.patch(client.resource("v1", "Node"), "n2", {"spec": {"taints": [
        {"key": "maintenance", "effect": "NoExecute"}]}})
    await eventually(lambda: on(["n1"]))


async def test_delete_daemonset_foreground_and_orphan(client: Client,
                                                      components: Components) -> None:
    for n in ("n1", "n2"):
        await add_node(client, n)
    ds_rt = client.resource("apps/v1", "DaemonSet")
    await components.start(DaemonSetController(client, components.factory),
                           GarbageCollector(client, components.factory))
    await client.create(ds_rt, daemonset("fg"), NS)
    await client.create(ds_rt, daemonset("or"), NS)
    await eventually(lambda: nodes_of_eq(client, "fg", 2))
    await eventually(lambda: nodes_of_eq(client, "or", 2))

    async def ds_gone(name: str) -> bool:
        items = (await client.list(ds_rt, NS))["items"]
        return name not in {d["metadata"]["name"] for d in items}
    await client.delete(ds_rt, "fg", NS, propagation_policy="Foreground")
    await eventually(lambda: ds_gone("fg"))
    assert await ds_pods(client, "fg") == []
    revisions = await client.list(client.resource("apps/v1", "ControllerRevision"), NS)
    assert all(not r["metadata"]["name"].startswith("fg-") for r in revisions["items"])

    orphans = {p["metadata"]["uid"] for p in await ds_pods(client, "or")}
    await client.delete(ds_rt, "or", NS, propagation_policy="Orphan")
    await eventually(lambda: ds_gone("or"))
    pods = await ds_pods(client, "or")
    assert {p["metadata"]["uid"] for p in pods} == orphans
    assert all(not p["metadata"].get("ownerReferences") for p in pods)
