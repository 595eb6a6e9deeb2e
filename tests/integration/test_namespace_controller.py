"""The namespace controller against a real API server: deleting a namespace deletes
its content, then the namespace itself."""

from __future__ import annotations

from pinnace.client.client import Client
from pinnace.controllers.namespace import NamespaceController
from tests.integration.conftest import Api, Components, eventually, gone


async def test_namespace_deletion_removes_content(client: Client,
                                                  components: Components) -> None:
    ns_rt = client.resource("v1", "Namespace")
    cms = client.resource("v1", "ConfigMap")
    pods = client.resource("v1", "Pod")
    deploys = client.resource("apps/v1", "Deployment")
    await client.create(ns_rt, {"metadata": {"name": "doomed"}})
    await client.create(ns_rt, {"metadata": {"name": "kept"}})
    await client.create(cms, {"metadata": {"name": "cfg"}}, "doomed")
    await client.create(cms, {"metadata": {"name": "cfg"}}, "kept")
    await client.create(pods, {"metadata": {"name": "p", "finalizers": ["example.com/hold"]},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                        "doomed")
    await client.create(deploys, {"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, "doomed")
    await components.start(NamespaceController(client, components.factory,
                                               requeue_seconds=0.1))
    await client.delete(ns_rt, "doomed")

    async def content_gone_but_held_pod() -> bool:
        left = (await client.list(cms, "doomed"))["items"] + \
            (await client.list(deploys, "doomed"))["items"]
        pod = await client.get(pods, "p", "doomed")
        return not left and bool(pod["metadata"].get("deletionTimestamp"))
    await eventually(content_gone_but_held_pod)

    async def remaining_condition() -> bool:
        ns = await client.get(ns_rt, "doomed")
        conds = {c["type"]: c for c in ns["status"].get("conditions") or []}
        c = conds.get("NamespaceFinalizersRemaining")
        return ns["spec"]["finalizers"] == ["kubernetes"] and c is not None and \
            c["status"] == "True" and "example.com/hold" in c["message"]
    await eventually(remaining_condition)

    await client.patch(pods, "p", {"metadata": {"finalizers": None}}, namespace="doomed")
    await eventually(lambda: gone(client, ns_rt, "doomed"))
    assert (await client.get(cms, "cfg", "kept"))["metadata"]["name"] == "cfg"
    assert (await client.get(ns_rt, "kept"))["status"]["phase"] == "Active"


async def test_namespace_deletion_removes_custom_objects(api: Api, client: Client,
                                                         components: Components) -> None:
    from tests.integration.test_custom_resources import GROUP, create_crd, widget, widget_crd
    await create_crd(api, widget_crd())
    ns_rt = client.resource("v1", "Namespace")
    await client.create(ns_rt, {"metadata": {"name": "doomed"}})
    code, body = await api.request(
        "POST", f"/apis/{GROUP}/v1/namespaces/doomed/widgets", json=widget("w", size=1))
    assert code == 201, body
    await components.start(NamespaceController(client, components.factory,
                                               requeue_seconds=0.1))
    await client.delete(ns_rt, "doomed")
    await eventually(lambda: gone(client, ns_rt, "doomed"))
    _, listed = await api.request("GET", f"/apis/{GROUP}/v1/widgets")
    assert listed["items"] == []
