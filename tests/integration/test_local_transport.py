"""The in-process transport (`apiserver/local.py`), which every component of `pinnace up`
uses: the same handlers, validation and admission as HTTPS, errors as ApiError with
Kubernetes' codes, every answer a private copy and watch events the watch cache's own
(read-only) objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pinnace.api import errors
from pinnace.apiserver.auth import AUTHENTICATED, User
from pinnace.apiserver.local import LocalTransport
from pinnace.client.client import Client
from tests.integration.conftest import Api


@pytest.fixture
async def local(api: Api) -> AsyncIterator[Client]:
    assert api.server.registry is not None
    c = Client(LocalTransport(api.server.registry), field_manager="local-test")
    yield c
    await c.close()


def rt(c: Client, api_version: str, kind: str) -> Any:
    return c.resource(api_version, kind)


def cm(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}


async def test_create_get_and_seen_over_https(local: Client, api: Api) -> None:
    cms = rt(local, "v1", "ConfigMap")
    created = await local.create(cms, cm("one"), "default")
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    assert created["metadata"]["managedFields"][0]["manager"] == "local-test"
    got = await local.get(cms, "one", "default")
    assert got == created
    status, body = await api.request("GET", "/api/v1/namespaces/default/configmaps/one")
    assert status == 200 and body == created


async def test_list_with_selectors_and_pages(local: Client) -> None:
    cms = rt(local, "v1", "ConfigMap")
    for i, env in enumerate(["prod", "dev", "prod"]):
        await local.create(cms, cm(f"c{i}", {"env": env}), "default")
    out = await local.list(cms, "default", label_selector="env=prod")
    assert [o["metadata"]["name"] for o in out["items"]] == ["c0", "c2"]
    out = await local.list(cms, "default", field_selector="metadata.name=c1")
    assert [o["metadata"]["name"] for o in out["items"]] == ["c1"]
    page = await local.list(cms, "default", limit=2)
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = await local.list(cms, "default", limit=2,
                            continue_token=page["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in rest["items"]] == ["c2"]


async def test_patch_kinds(local: Client) -> None:
    cms = rt(local, "v1", "ConfigMap")
    await local.create(cms, cm("p"), "default")
    out = await local.patch(cms, "p", {"data": {"k": "merged"}}, namespace="default")
    assert out["data"] == {"k": "merged"}
    out = await local.patch(cms, "p", [{"op": "add", "path": "/data/j", "value": "x"}],
                            namespace="default", patch_type="json")
    assert out["data"] == {"k": "merged", "j": "x"}
    deps = rt(local, "apps/v1", "Deployment")
    await local.create(deps, deployment("d"), "default")
    out = await local.patch(deps, "d", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:2"}]}}}}, namespace="default", patch_type="strategic")
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert out["metadata"]["generation"] == 2


def deployment(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


async def test_errors_are_api_errors_with_kubernetes_codes(local: Client) -> None:
    cms = rt(local, "v1", "ConfigMap")
    with pytest.raises(errors.ApiError) as e:
        await local.get(cms, "missing", "default")
    assert e.value.code == 404 and e.value.reason == "NotFound"
    await local.create(cms, cm("dup"), "default")
    with pytest.raises(errors.ApiError) as e:
        await local.create(cms, cm("dup"), "default")
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"
    with pytest.raises(errors.ApiError) as e:
        await local.create(cms, cm("Not_Valid"), "default")
    assert e.value.code == 422 and e.value.reason == "Invalid"
    stale = await local.get(cms, "dup", "default")
    await local.patch(cms, "dup", {"data": {"k": "new"}}, namespace="default")
    with pytest.raises(errors.ApiError) as e:
        await local.update(cms, stale)
    assert e.value.code == 409 and e.value.reason == "Conflict"
    with pytest.raises(errors.ApiError) as e:
        await local.list(cms, "default", label_selector="a in (")
    assert e.value.code == 400
    ns = rt(local, "v1", "Namespace")
    with pytest.raises(errors.ApiError) as e:
        await local.delete(ns, "default")
    assert e.value.code == 403 and "this namespace may not be deleted" in e.value.message
    status, body = await local.transport.request("GET", "/nowhere")
    assert status == 404 and body["kind"] == "Status"


async def test_admission_and_strategies_apply(local: Client) -> None:
    pods = rt(local, "v1", "Pod")
    pod = await local.create(pods, {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"}}, "default")
    # DefaultTolerationSeconds, and the status is the server's, not the client's
    keys = {t["key"] for t in pod["spec"]["tolerations"]}
    assert keys == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    assert pod["status"]["phase"] == "Pending"
    jobs = rt(local, "batch/v1", "Job")
    job = await local.create(jobs, {"metadata": {"name": "j"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "busybox"}]}}}}, "default")
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {
        "batch.kubernetes.io/controller-uid": uid}
    assert job["metadata"]["generation"] == 1


async def test_watch_from_a_resource_version(local: Client) -> None:
    cms = rt(local, "v1", "ConfigMap")
    first = await local.create(cms, cm("w1", {"w": "yes"}), "default")
    events: list[tuple[str, str]] = []

    async def follow() -> None:
        async for ev_type, obj in local.watch(cms, "default", label_selector="w=yes",
                                              resource_version=first["metadata"][
                                                  "resourceVersion"], timeout_seconds=5,
                                              bookmarks=False):
            events.append((ev_type, obj["metadata"]["name"]))
            if len(events) == 3:
                return
    task = asyncio.create_task(follow())
    await local.create(cms, cm("w2", {"w": "yes"}), "default")
    await local.create(cms, cm("skipped", {"w": "no"}), "default")
    await local.patch(cms, "w1", {"data": {"k": "2"}}, namespace="default")
    await local.delete(cms, "w2", "default")
    await asyncio.wait_for(task, 5)
    assert events == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]


async def test_watch_errors(local: Client) -> None:
    cms = rt(local, "v1", "ConfigMap")
    with pytest.raises(errors.ApiError) as e:
        async for _ in local.watch(cms, "default", resource_version="abc"):
            pass
    assert e.value.code == 400
    answers = [a async for a in local.transport.stream("/api/v1/widgets", {"watch": "1"})]
    assert [(code, body["reason"]) for code, body in answers] == [(404, "NotFound")]


async def test_answers_are_copies_and_watch_events_share_the_cache(local: Client, api: Api
                                                                   ) -> None:
    cms = rt(local, "v1", "ConfigMap")
    created = await local.create(cms, cm("mine"), "default")
    created["data"]["k"] = "changed by the caller"
    got = await local.get(cms, "mine", "default")
    assert got["data"] == {"k": "v"}
    got["data"]["k"] = "changed again"
    listed = await local.list(cms, "default")
    assert listed["items"][0]["data"] == {"k": "v"}
    listed["items"][0]["metadata"]["labels"] = {"x": "y"}
    assert api.server.registry is not None
    cached = api.server.registry.cache(cms).get("default", "mine")
    assert cached is not None and cached["data"] == {"k": "v"}
    assert "labels" not in cached["metadata"] or cached["metadata"]["labels"] == {}
    # an in-process informer holds the server's object, not a second copy of it
    async for ev_type, obj in local.watch(cms, "default", timeout_seconds=1, bookmarks=False):
        assert ev_type == "ADDED"
        assert obj is cached
        break


async def test_a_user_is_authorized_as_over_https(local: Client, api: Api) -> None:
    """With a user, the in-process transport applies RBAC (and the escalation check)
    exactly as the HTTPS middleware does."""
    assert api.server.registry is not None
    alice = Client(LocalTransport(api.server.registry, user=User("alice", (AUTHENTICATED,))))
    cms = rt(alice, "v1", "ConfigMap")
    with pytest.raises(errors.ApiError) as e:
        await alice.list(cms, "default")
    assert e.value.code == 403
    assert e.value.message == ('configmaps is forbidden: User "alice" cannot list resource '
                               '"configmaps" in API group "" in the namespace "default"')
    with pytest.raises(errors.ApiError) as e:
        async for _ in alice.watch(cms, "default", timeout_seconds=1):
            pass
    assert e.value.code == 403
    bindings = rt(local, "rbac.authorization.k8s.io/v1", "RoleBinding")
    await local.create(bindings, {
        "metadata": {"name": "alice-admin-here"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "alice"}]}, "default")
    await alice.create(cms, cm("by-alice"), "default")
    assert [o["metadata"]["name"] for o in (await alice.list(cms, "default"))["items"]] == [
        "by-alice"]
    # admin of the namespace may bind roles, but not grant more than she holds: the
    # registry's escalation check sees her too
    roles = rt(alice, "rbac.authorization.k8s.io/v1", "RoleBinding")
    with pytest.raises(errors.ApiError) as e:
        await alice.create(roles, {
            "metadata": {"name": "alice-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "alice"}]}, "default")
    assert e.value.code == 403 and "alice-admin" in e.value.message, e.value.message
    with pytest.raises(errors.ApiError) as e:  # and namespaces are not hers to delete
        await alice.delete(rt(alice, "v1", "Namespace"), "scratch")
    assert e.value.code == 403
