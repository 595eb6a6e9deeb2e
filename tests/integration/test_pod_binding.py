"""The pods/binding subresource as a scheduler uses it: a pod is assigned once, with
PodScheduled=True, and every refusal is a Status (409 or 422), never a half write."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api

PODS = "/api/v1/namespaces/default/pods"


def binding(pod: str, node: str, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, **metadata},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


async def make_pod(api: Api, name: str) -> dict[str, Any]:
    status, body = await api.request("POST", PODS, json={
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, body
    return body


async def test_binding_assigns_the_node_once(api: Api) -> None:
    created = await make_pod(api, "web")
    status, body = await api.request("POST", f"{PODS}/web/binding",
                                     json=binding("web", "node-a", uid=created["metadata"]["uid"]))
    assert (status, body["status"]) == (201, "Success"), body
    _, pod = await api.request("GET", f"{PODS}/web")
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["spec"]["containers"] == created["spec"]["containers"]
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert int(pod["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert len(scheduled) == 1 and scheduled[0]["status"] == "True"
    assert scheduled[0]["lastTransitionTime"]

    status, body = await api.request("POST", f"{PODS}/web/binding", json=binding("web", "node-b"))
    assert status == 409, body
    assert body["message"].endswith('pod web is already assigned to node "node-a"')
    _, pod = await api.request("GET", f"{PODS}/web")
    assert pod["spec"]["nodeName"] == "node-a"


async def test_binding_refusals_leave_the_pod_unbound(api: Api) -> None:
    await make_pod(api, "p")
    status, body = await api.request("POST", f"{PODS}/p/binding",
                                     json=binding("p", "node-a", uid="not-the-uid"))
    assert status == 409 and "Precondition failed: UID in precondition" in body["message"]
    status, body = await api.request("POST", f"{PODS}/p/binding", json=binding("p", "Bad_Node"))
    assert status == 422, body
    assert body["details"]["causes"][0]["field"] == "target.name"
    status, body = await api.request("POST", f"{PODS}/p/binding",
                                     json={"metadata": {"name": "p"}, "target": {}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "target.name"
    status, body = await api.request("POST", f"{PODS}/missing/binding",
                                     json=binding("missing", "node-a"))
    assert status == 404, body
    status, _ = await api.request("POST", f"{PODS}/p/binding?dryRun=All",
                                  json=binding("p", "node-a"))
    assert status == 201
    _, pod = await api.request("GET", f"{PODS}/p")
    assert not pod["spec"].get("nodeName")
    assert not [c for c in pod["status"].get("conditions") or []
                if c["type"] == "PodScheduled" and c["status"] == "True"]
