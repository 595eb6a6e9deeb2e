"""NamespaceLifecycle: the four namespaces a cluster starts with cannot be deleted (the
real kubectl sees Kubernetes' 403), and nothing new is created in a namespace that is
being terminated."""

from __future__ import annotations

from pinnace.apiserver.strategies.namespaces import SYSTEM_NAMESPACES
from tests.integration.conftest import Api, run_kubectl


async def kubectl(api: Api, *args: str) -> tuple[int, str, str]:
    return await run_kubectl(api.server.write_kubeconfig(), *args)


async def test_kubectl_cannot_delete_system_namespaces(api: Api) -> None:
    for name in SYSTEM_NAMESPACES:
        rc, out, err = await kubectl(api, "delete", "namespace", name)
        assert rc == 1, (name, out, err)
        assert f'Error from server (Forbidden): namespaces "{name}" is forbidden: this ' \
               f"namespace may not be deleted" in err, err
        status, ns = await api.request("GET", f"/api/v1/namespaces/{name}")
        assert status == 200 and "deletionTimestamp" not in ns["metadata"], ns
        assert ns["status"]["phase"] == "Active"
    # any other namespace goes as usual
    rc, _, err = await kubectl(api, "create", "namespace", "scratch")
    assert rc == 0, err
    rc, out, err = await kubectl(api, "delete", "namespace", "scratch", "--wait=false")
    assert rc == 0 and 'namespace "scratch" deleted' in out, (out, err)


async def test_delete_system_namespace_status(api: Api) -> None:
    status, body = await api.request("DELETE", "/api/v1/namespaces/kube-system")
    assert status == 403, body
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'namespaces "kube-system" is forbidden: this namespace may not be deleted',
        "reason": "Forbidden", "details": {"name": "kube-system", "kind": "namespaces"},
        "code": 403}
    # a dry run is refused the same way: admission runs before anything is decided
    status, body = await api.request("DELETE", "/api/v1/namespaces/default?dryRun=All")
    assert status == 403, body


async def test_no_new_content_in_a_terminating_namespace(api: Api) -> None:
    status, body = await api.request("POST", "/api/v1/namespaces", json={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "leaving"}})
    assert status == 201, body
    cms = "/api/v1/namespaces/leaving/configmaps"
    status, body = await api.request("POST", cms, json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}})
    assert status == 201, body
    # no namespace controller runs here: spec.finalizers keep it Terminating
    status, body = await api.request("DELETE", "/api/v1/namespaces/leaving")
    assert status == 200 and body["status"]["phase"] == "Terminating", body
    status, body = await api.request("POST", cms, json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}})
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('configmaps "after" is forbidden: unable to create new content '
                               "in namespace leaving because it is being terminated")
    assert body["details"]["kind"] == "configmaps" and body["details"]["name"] == "after"
    assert body["details"]["causes"] == [{
        "reason": "NamespaceTerminating", "field": "metadata.namespace",
        "message": "namespace leaving is being terminated"}]
    status, body = await api.request(
        "POST", "/apis/apps/v1/namespaces/leaving/deployments", json={
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generateName": "d-"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    assert status == 403 and body["message"].startswith(
        "deployments.apps is forbidden: unable to create new content"), body
    # server-side apply creating an object is a create too
    status, body = await api.request(
        "PATCH", f"{cms}/applied?fieldManager=t", data='{"apiVersion": "v1", "kind": '
        '"ConfigMap", "metadata": {"name": "applied"}}',
        headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 403, body
    # what is there can still change (the namespace controller deletes it)
    status, body = await api.request("PATCH", f"{cms}/before", data='{"data": {"a": "b"}}',
                                     headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200, body
    status, body = await api.request("POST", "/api/v1/namespaces/nowhere/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found', body
