"""The API behaves like Kubernetes 1.32: list paging and selectors, watch, create and
update semantics, subresources, delete, Service allocation, namespaces, concurrency,
content negotiation and restart — all seen from an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.apiserver import watch as watch_module
from pinnace.apiserver.server import ApiServer
from tests.integration.conftest import Api

NS = "/api/v1/namespaces/default"
CMS = f"{NS}/configmaps"
PODS = f"{NS}/pods"
SVCS = f"{NS}/services"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def cm(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    meta.update(extra)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def pod(name: str, node: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


async def create(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, out = await api.request("POST", path, json=body)
    assert status == 201, out
    return out


def names(body: dict[str, Any]) -> list[str]:
    return [o["metadata"]["name"] for o in body["items"]]


MERGE = {"Content-Type": "application/merge-patch+json"}


class Events:
    """A watch stream read line by line."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.resp.content.readline(), 3.0)
        assert line, "the watch ended"
        return json.loads(line)

    async def none_within(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.resp.content.readline(), seconds)


@contextlib.asynccontextmanager
async def watching(api: Api, path: str, headers: dict[str, str] | None = None,
                   ) -> AsyncIterator[Events]:
    hdrs = {"Authorization": f"Bearer {api.server.token}", **(headers or {})}
    async with api.session.get(api.url + path, headers=hdrs) as resp:
        assert resp.status == 200
        yield Events(resp)


# -- 1. list ----------------------------------------------------------------------------

async def test_list_paging_visits_every_object_once(api: Api) -> None:
    for i in range(25):
        await create(api, CMS, cm(f"cm-{i:02d}"))
    seen: list[str] = []
    path = f"{CMS}?limit=10"
    remaining = []
    while True:
        status, body = await api.request("GET", path)
        assert status == 200
        seen += names(body)
        token = body["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in body["metadata"]
            break
        remaining.append(body["metadata"]["remainingItemCount"])
        # writes in between do not show up in the paged (consistent) list
        await create(api, CMS, cm(f"late-{len(seen)}"))
        path = f"{CMS}?limit=10&continue={token}"
    assert seen == [f"cm-{i:02d}" for i in range(25)]
    assert remaining == [15, 5]


async def test_list_exact_resource_version(api: Api) -> None:
    await create(api, CMS, cm("first"))
    _, lst = await api.request("GET", CMS)
    rv = lst["metadata"]["resourceVersion"]
    await create(api, CMS, cm("second"))
    await api.request("DELETE", f"{CMS}/first")
    status, body = await api.request("GET", f"{CMS}?resourceVersion={rv}"
                                            "&resourceVersionMatch=Exact")
    assert status == 200, body
    assert names(body) == ["first"] and body["metadata"]["resourceVersion"] == rv
    status, body = await api.request("GET", f"{CMS}?resourceVersionMatch=Exact")
    assert status == 422, body  # Kubernetes' ValidateListOptions: Invalid ListOptions
    assert body["message"] == ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: '
                               'Forbidden: resourceVersionMatch is forbidden unless '
                               'resourceVersion is provided')


async def test_label_selectors(api: Api) -> None:
    await create(api, CMS, cm("a", {"env": "prod", "tier": "web"}))
    await create(api, CMS, cm("b", {"env": "dev", "tier": "web"}))
    await create(api, CMS, cm("c", {"env": "test"}))
    await create(api, CMS, cm("d"))
    cases = {
        "env=prod": ["a"],
        "env!=prod": ["b", "c", "d"],
        "env in (prod,dev)": ["a", "b"],
        "env notin (prod,dev)": ["c", "d"],
        "tier": ["a", "b"],
        "!tier": ["c", "d"],
        "env in (dev,test),!tier": ["c"],
    }
    for sel, want in cases.items():
        status, body = await api.request("GET", f"{CMS}?labelSelector={sel}")
        assert status == 200, body
        assert names(body) == want, sel
    status, body = await api.request("GET", f"{CMS}?labelSelector=env in (prod")
    assert status == 400


async def test_field_selectors_on_pods(api: Api) -> None:
    await create(api, PODS, pod("p1", node="n1"))
    await create(api, PODS, pod("p2", node="n2"))
    await create(api, PODS, pod("p3"))
    status, body = await api.request("GET", f"{PODS}?fieldSelector=metadata.name=p2")
    assert names(body) == ["p2"]
    status, body = await api.request("GET", f"{PODS}?fieldSelector=spec.nodeName=n1")
    assert names(body) == ["p1"]
    status, body = await api.request("GET", f"{PODS}?fieldSelector=spec.nodeName=")
    assert names(body) == ["p3"]
    status, body = await api.request("GET", f"{PODS}?fieldSelector=status.phase=Pending")
    assert names(body) == ["p1", "p2", "p3"]
    status, body = await api.request(
        "GET", f"{PODS}?fieldSelector=status.phase!=Pending,spec.nodeName=n1")
    assert names(body) == []
    status, body = await api.request("GET", f"{PODS}?fieldSelector=spec.image=busybox")
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"


async def test_list_all_namespaces_and_missing_namespace(api: Api) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await create(api, PODS, pod("here"))
    await create(api, "/api/v1/namespaces/other/pods", pod("there"))
    status, body = await api.request("GET", "/api/v1/pods")
    assert status == 200
    assert body["kind"] == "PodList"
    assert sorted((o["metadata"]["namespace"], o["metadata"]["name"])
                  for o in body["items"]) == [("default", "here"), ("other", "there")]
    status, body = await api.request("GET", "/api/v1/namespaces/nowhere/pods")
    assert status == 200
    assert body["items"] == []


async def test_list_resource_version_increases(api: Api) -> None:
    _, first = await api.request("GET", CMS)
    await create(api, CMS, cm("x"))
    _, second = await api.request("GET", CMS)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert int(second["metadata"]["resourceVersion"]) >= \
        int(second["items"][-1]["metadata"]["resourceVersion"])


# -- 2. watch ---------------------------------------------------------------------------

async def test_watch_from_list_resource_version_gets_only_later_events(api: Api) -> None:
    await create(api, CMS, cm("old"))
    _, lst = await api.request("GET", CMS)
    rv = lst["metadata"]["resourceVersion"]
    async with watching(api, f"{CMS}?watch=true&resourceVersion={rv}") as events:
        await create(api, CMS, cm("new"))
        ev = await events.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "new")
        await events.none_within(0.2)


@pytest.mark.parametrize("rv", ["", "&resourceVersion=0"])
async def test_watch_without_resource_version_starts_with_current_state(api: Api,
                                                                        rv: str) -> None:
    await create(api, CMS, cm("one"))
    await create(api, CMS, cm("two"))
    async with watching(api, f"{CMS}?watch=true{rv}") as events:
        first = [await events.next(), await events.next()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == \
            [("ADDED", "one"), ("ADDED", "two")]
        await api.request("PATCH", f"{CMS}/one", json={"data": {"k": "w"}}, headers=MERGE)
        ev = await events.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("MODIFIED", "one")


async def test_watch_label_selector_moves_in_and_out(api: Api) -> None:
    await create(api, CMS, cm("x", {"app": "a"}))
    async with watching(api, f"{CMS}?watch=true&labelSelector=app%3Da") as events:
        ev = await events.next()
        assert ev["type"] == "ADDED"
        await api.request("PATCH", f"{CMS}/x", json={"metadata": {"labels": {"app": "b"}}},
                          headers=MERGE)
        ev = await events.next()
        assert ev["type"] == "DELETED" and ev["object"]["metadata"]["labels"]["app"] == "b"
        await api.request("PATCH", f"{CMS}/x", json={"data": {"k": "z"}}, headers=MERGE)
        await events.none_within(0.2)
        await api.request("PATCH", f"{CMS}/x", json={"metadata": {"labels": {"app": "a"}}},
                          headers=MERGE)
        ev = await events.next()
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["labels"]["app"] == "a"


async def test_watch_timeout_ends_the_stream(api: Api) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with watching(api, f"{CMS}?watch=true&timeoutSeconds=1&resourceVersion=1") as ev:
        rest = await asyncio.wait_for(ev.resp.content.read(), 5)
    assert rest == b""
    assert 0.9 <= loop.time() - start < 3


async def test_watch_bookmarks(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "BOOKMARK_INTERVAL", 0.2)
    await create(api, CMS, cm("b"))
    _, lst = await api.request("GET", CMS)
    rv = lst["metadata"]["resourceVersion"]
    async with watching(api, f"{CMS}?watch=true&resourceVersion={rv}"
                             "&allowWatchBookmarks=true") as events:
        ev = await events.next()
        assert ev["type"] == "BOOKMARK"
        assert ev["object"]["kind"] == "ConfigMap"
        assert int(ev["object"]["metadata"]["resourceVersion"]) >= int(rv)
    async with watching(api, f"{CMS}?watch=true&resourceVersion={rv}") as events:
        await events.none_within(0.5)  # no bookmarks unless asked


async def test_watch_single_object_by_name(api: Api) -> None:
    await create(api, CMS, cm("a"))
    await create(api, CMS, cm("target"))
    async with watching(api, f"{CMS}?watch=true&fieldSelector=metadata.name%3Dtarget") as evs:
        ev = await evs.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "target")
        await api.request("PATCH", f"{CMS}/a", json={"data": {"k": "1"}}, headers=MERGE)
        status, _ = await api.request("DELETE", f"{CMS}/target")
        assert status == 200
        ev = await evs.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "target")


async def test_abandoned_watch_is_dropped(api: Api) -> None:
    cache = api.server.registry.cache(api.server.registry.kinds.by_resource("", "v1",
                                                                            "configmaps"))
    async with watching(api, f"{CMS}?watch=true"):
        await asyncio.sleep(0.1)
        assert len(cache.watchers) == 1
    for _ in range(30):
        if not cache.watchers:
            break
        await asyncio.sleep(0.1)
    assert not cache.watchers


async def test_watch_as_table(api: Api) -> None:
    await create(api, PODS, pod("tp"))
    async with watching(api, f"{PODS}?watch=true", headers={"Accept": TABLE}) as events:
        ev = await events.next()
        assert ev["type"] == "ADDED"
        table = ev["object"]
        assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
        assert table["rows"][0]["cells"][0] == "tp"
        assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


# -- 3. create / update -----------------------------------------------------------------

async def test_generate_name(api: Api) -> None:
    body = cm("")
    body["metadata"] = {"generateName": "gen-"}
    a = await create(api, CMS, body)
    b = await create(api, CMS, body)
    assert a["metadata"]["name"].startswith("gen-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert a["metadata"]["generateName"] == "gen-"


async def test_dry_run_create_writes_nothing(api: Api) -> None:
    status, out = await api.request("POST", f"{CMS}?dryRun=All", json=cm("dry"))
    assert status == 201
    assert out["metadata"]["uid"]
    status, _ = await api.request("GET", f"{CMS}/dry")
    assert status == 404
    _, created = await api.request("POST", CMS, json=cm("real"))
    status, _ = await api.request("PUT", f"{CMS}/real?dryRun=All",
                                  json={**created, "data": {"k": "dry"}})
    assert status == 200
    _, now = await api.request("GET", f"{CMS}/real")
    assert now["data"] == {"k": "v"}
    assert now["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_counts_spec_changes_only(api: Api) -> None:
    d = await create(api, DEPLOYS, deployment("web"))
    assert d["metadata"]["generation"] == 1
    path = f"{DEPLOYS}/web"
    _, d = await api.request("PATCH", path, headers=MERGE, json={
        "metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}}})
    assert d["metadata"]["generation"] == 1
    _, d = await api.request("PATCH", f"{path}/status", headers=MERGE,
                             json={"status": {"observedGeneration": 1, "replicas": 1}})
    assert d["metadata"]["generation"] == 1
    _, d = await api.request("PATCH", path, headers=MERGE, json={"spec": {"replicas": 3}})
    assert d["metadata"]["generation"] == 2
    # ConfigMaps have no generation
    c = await create(api, CMS, cm("nogen"))
    assert "generation" not in c["metadata"]


async def test_status_subresource_and_main_resource_split(api: Api) -> None:
    d = await create(api, DEPLOYS, deployment("split"))
    path = f"{DEPLOYS}/split"
    # main resource: status is ignored
    d["spec"]["replicas"] = 2
    d["status"] = {"replicas": 7}
    status, out = await api.request("PUT", path, json=d)
    assert status == 200
    assert out["spec"]["replicas"] == 2
    assert out.get("status", {}).get("replicas") != 7
    # status subresource: spec is ignored
    out["spec"]["replicas"] = 9
    out["status"] = {"replicas": 5}
    status, out2 = await api.request("PUT", f"{path}/status", json=out)
    assert status == 200, out2
    assert out2["spec"]["replicas"] == 2
    assert out2["status"]["replicas"] == 5
    status, out3 = await api.request("PATCH", f"{path}/status", headers=MERGE,
                                     json={"spec": {"replicas": 4}, "status": {"replicas": 6}})
    assert status == 200
    assert out3["spec"]["replicas"] == 2 and out3["status"]["replicas"] == 6
    status, got = await api.request("GET", f"{path}/status")
    assert status == 200 and got["status"]["replicas"] == 6


async def test_update_conflicts_and_unconditional_put(api: Api) -> None:
    c = await create(api, CMS, cm("u"))
    path = f"{CMS}/u"
    stale = json.loads(json.dumps(c))
    c["data"] = {"k": "1"}
    status, _ = await api.request("PUT", path, json=c)
    assert status == 200
    stale["data"] = {"k": "2"}
    status, body = await api.request("PUT", path, json=stale)
    assert status == 409 and body["reason"] == "Conflict"
    unconditional = cm("u")
    unconditional["data"] = {"k": "3"}
    status, c3 = await api.request("PUT", path, json=unconditional)
    assert status == 200, c3
    assert c3["data"] == {"k": "3"}
    assert c3["metadata"]["uid"] == c["metadata"]["uid"]


async def test_put_cannot_change_uid_or_creation_timestamp(api: Api) -> None:
    c = await create(api, CMS, cm("immutable"))
    changed = json.loads(json.dumps(c))
    changed["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    status, out = await api.request("PUT", f"{CMS}/immutable", json=changed)
    assert status == 409, out  # a uid in the body is a precondition
    assert "Precondition failed: UID" in out["message"]
    changed = json.loads(json.dumps(c))
    changed["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    changed["data"] = {"k": "changed"}
    status, out = await api.request("PUT", f"{CMS}/immutable", json=changed)
    assert status == 200, out  # the timestamp change is ignored
    _, now = await api.request("GET", f"{CMS}/immutable")
    assert now["data"] == {"k": "changed"}
    assert now["metadata"]["uid"] == c["metadata"]["uid"]
    assert now["metadata"]["creationTimestamp"] == c["metadata"]["creationTimestamp"]


async def test_no_op_writes_keep_resource_version(api: Api) -> None:
    c = await create(api, CMS, cm("same", {"a": "b"}))
    rv = c["metadata"]["resourceVersion"]
    status, out = await api.request("PUT", f"{CMS}/same", json=c)
    assert status == 200 and out["metadata"]["resourceVersion"] == rv
    status, out = await api.request("PATCH", f"{CMS}/same", headers=MERGE,
                                    json={"metadata": {"labels": {"a": "b"}}})
    assert status == 200 and out["metadata"]["resourceVersion"] == rv
    status, out = await api.request(
        "PATCH", f"{CMS}/same", json={"data": {"k": "v"}},
        headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert status == 200 and out["metadata"]["resourceVersion"] == rv


# -- 4. scale ---------------------------------------------------------------------------

async def test_scale_subresource(api: Api) -> None:
    await create(api, DEPLOYS, deployment("sc", replicas=2))
    path = f"{DEPLOYS}/sc/scale"
    status, scale = await api.request("GET", path)
    assert status == 200
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=sc"
    status, scale = await api.request("PATCH", path, headers=MERGE,
                                      json={"spec": {"replicas": 5}})
    assert status == 200 and scale["spec"]["replicas"] == 5
    scale["spec"]["replicas"] = 1
    status, scale = await api.request("PUT", path, json=scale)
    assert status == 200 and scale["spec"]["replicas"] == 1
    _, d = await api.request("GET", f"{DEPLOYS}/sc")
    assert d["spec"]["replicas"] == 1
    assert d["metadata"]["generation"] == 3
    scale["metadata"]["resourceVersion"] = "1"
    status, _ = await api.request("PUT", path, json=scale)
    assert status == 409


# -- 5. delete --------------------------------------------------------------------------

async def test_delete_preconditions(api: Api) -> None:
    c = await create(api, CMS, cm("pre"))
    status, body = await api.request("DELETE", f"{CMS}/pre",
                                     json={"preconditions": {"uid": "wrong"}})
    assert status == 409 and body["reason"] == "Conflict"
    status, body = await api.request("DELETE", f"{CMS}/pre",
                                     json={"preconditions": {"resourceVersion": "1"}})
    assert status == 409
    status, body = await api.request("DELETE", f"{CMS}/pre", json={"preconditions": {
        "uid": c["metadata"]["uid"], "resourceVersion": c["metadata"]["resourceVersion"]}})
    assert status == 200
    assert body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"] == {"name": "pre", "kind": "configmaps",
                               "uid": c["metadata"]["uid"]}


async def test_delete_propagation_policies_add_finalizers(api: Api) -> None:
    await create(api, DEPLOYS, deployment("fg"))
    status, body = await api.request("DELETE", f"{DEPLOYS}/fg?propagationPolicy=Foreground")
    assert status == 200, body  # 202 only for the legacy orphanDependents=false
    assert body["kind"] == "Deployment"
    assert body["metadata"]["generation"] == 2  # marking deleted bumps the generation
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    await create(api, DEPLOYS, deployment("or"))
    status, body = await api.request("DELETE", f"{DEPLOYS}/or",
                                     json={"propagationPolicy": "Orphan"})
    assert status == 200
    assert body["metadata"]["finalizers"] == ["orphan"]
    legacy = deployment("legacy")
    legacy["metadata"]["finalizers"] = ["example.com/hold"]
    await create(api, DEPLOYS, legacy)
    status, body = await api.request("DELETE", f"{DEPLOYS}/legacy",
                                     json={"orphanDependents": False})
    assert status == 202
    assert body["metadata"]["finalizers"] == ["example.com/hold"]
    # Background removes the finalizers a previous delete asked for
    status, body = await api.request("DELETE", f"{DEPLOYS}/or",
                                     json={"propagationPolicy": "Background"})
    assert status == 200
    status, _ = await api.request("GET", f"{DEPLOYS}/or")
    assert status == 404


async def test_custom_finalizer_holds_the_object(api: Api) -> None:
    await create(api, CMS, cm("held", finalizers=["example.com/hold"]))
    _, lst = await api.request("GET", CMS)
    rv = lst["metadata"]["resourceVersion"]
    async with watching(api, f"{CMS}?watch=true&resourceVersion={rv}") as events:
        status, body = await api.request("DELETE", f"{CMS}/held")
        assert status == 200
        assert body["kind"] == "ConfigMap" and body["metadata"]["deletionTimestamp"]
        ev = await events.next()
        assert ev["type"] == "MODIFIED"
        status, _ = await api.request("GET", f"{CMS}/held")
        assert status == 200
        # other changes are allowed while being deleted, and don't remove the object
        status, _ = await api.request("PATCH", f"{CMS}/held", headers=MERGE,
                                      json={"metadata": {"labels": {"a": "b"}}})
        assert status == 200
        assert (await events.next())["type"] == "MODIFIED"
        status, body = await api.request("PATCH", f"{CMS}/held", headers=MERGE,
                                         json={"metadata": {"finalizers": None}})
        assert status == 200, body
        ev = await events.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "held")
    status, _ = await api.request("GET", f"{CMS}/held")
    assert status == 404


async def test_delete_collection_with_label_selector(api: Api) -> None:
    for i in range(4):
        await create(api, CMS, cm(f"dc-{i}", {"group": "odd" if i % 2 else "even"}))
    status, body = await api.request("DELETE", f"{CMS}?labelSelector=group%3Dodd")
    assert status == 200, body
    assert body["kind"] == "ConfigMapList"
    assert sorted(names(body)) == ["dc-1", "dc-3"]
    _, lst = await api.request("GET", f"{CMS}?labelSelector=group")
    assert names(lst) == ["dc-0", "dc-2"]


async def test_delete_returns_object_for_some_kinds(api: Api) -> None:
    p = await create(api, PODS, pod("gone"))
    status, body = await api.request("DELETE", f"{PODS}/gone")
    assert status == 200
    assert body["kind"] == "Pod" and body["metadata"]["uid"] == p["metadata"]["uid"]
    await create(api, CMS, cm("gone"))
    status, body = await api.request("DELETE", f"{CMS}/gone")
    assert status == 200 and body["kind"] == "Status"
    status, body = await api.request("DELETE", f"{CMS}/gone")
    assert status == 404 and body["reason"] == "NotFound"


async def test_dry_run_delete_keeps_the_object(api: Api) -> None:
    await create(api, CMS, cm("keep"))
    status, body = await api.request("DELETE", f"{CMS}/keep?dryRun=All")
    assert status == 200 and body["kind"] == "Status"
    status, _ = await api.request("GET", f"{CMS}/keep")
    assert status == 200
    status, _ = await api.request("DELETE", f"{CMS}/keep", json={"dryRun": ["All"]})
    assert status == 200
    status, _ = await api.request("GET", f"{CMS}/keep")
    assert status == 200


async def test_grace_period_in_query_and_body(api: Api) -> None:
    await create(api, PODS, pod("g1", node="n1"))
    await create(api, PODS, pod("g2", node="n1"))
    await create(api, PODS, pod("g3", node="n1"))
    status, body = await api.request("DELETE", f"{PODS}/g1?gracePeriodSeconds=5")
    assert status == 200
    assert body["metadata"]["deletionGracePeriodSeconds"] == 5
    # deletionTimestamp is when the grace period ends
    assert body["metadata"]["deletionTimestamp"] > body["metadata"]["creationTimestamp"]
    status, body = await api.request("DELETE", f"{PODS}/g2", json={"gracePeriodSeconds": 7})
    assert body["metadata"]["deletionGracePeriodSeconds"] == 7
    # the node agent reports status while the pod terminates: the pod stays
    status, body = await api.request("PATCH", f"{PODS}/g2/status", headers=MERGE,
                                     json={"status": {"message": "stopping"}})
    assert status == 200, body
    status, _ = await api.request("GET", f"{PODS}/g2")
    assert status == 200
    # a shorter grace period finishes the delete
    status, body = await api.request("DELETE", f"{PODS}/g2?gracePeriodSeconds=0")
    assert status == 200
    status, _ = await api.request("GET", f"{PODS}/g2")
    assert status == 404
    status, body = await api.request("DELETE", f"{PODS}/g3", json={"gracePeriodSeconds": 0})
    assert status == 200
    status, _ = await api.request("GET", f"{PODS}/g3")
    assert status == 404
    status, body = await api.request("DELETE", f"{PODS}/g1?gracePeriodSeconds=x")
    assert status == 400


# -- 6. Service allocation --------------------------------------------------------------

def service(name: str, svc_type: str = "ClusterIP", node_port: int | None = None,
            ) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": svc_type, "selector": {"app": name}, "ports": [port]}}


async def test_cluster_ip_allocated_and_stable(api: Api) -> None:
    import ipaddress
    s = await create(api, SVCS, service("ip"))
    ip = s["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    assert s["spec"]["clusterIPs"] == [ip]
    status, s2 = await api.request("PATCH", f"{SVCS}/ip", headers=MERGE,
                                   json={"metadata": {"labels": {"a": "b"}}})
    assert status == 200 and s2["spec"]["clusterIP"] == ip
    put = service("ip")  # a PUT without clusterIP keeps the allocated one
    status, s3 = await api.request("PUT", f"{SVCS}/ip", json=put)
    assert status == 200, s3
    assert s3["spec"]["clusterIP"] == ip
    _, k = await api.request("GET", f"{SVCS}/kubernetes")
    assert k["spec"]["clusterIP"] == "10.96.0.1"


async def test_node_ports(api: Api) -> None:
    s = await create(api, SVCS, service("np", "NodePort"))
    port = s["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    status, body = await api.request("POST", SVCS, json=service("np2", "NodePort", port))
    assert status == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.ports[0].nodePort"]
    status, _ = await api.request("DELETE", f"{SVCS}/np")
    assert status == 200
    s2 = await create(api, SVCS, service("np2", "NodePort", port))
    assert s2["spec"]["ports"][0]["nodePort"] == port
    # changing the type back to ClusterIP frees the port
    status, body = await api.request("PATCH", f"{SVCS}/np2", headers=MERGE,
                                     json={"spec": {"type": "ClusterIP"}})
    assert status == 200, body
    assert "nodePort" not in body["spec"]["ports"][0]
    await create(api, SVCS, service("np3", "NodePort", port))


# -- 7. namespaces ----------------------------------------------------------------------

async def test_namespace_deletion_terminates(api: Api) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    status, body = await api.request("DELETE", "/api/v1/namespaces/doomed")
    assert status == 200, body
    assert body["kind"] == "Namespace"
    assert body["status"]["phase"] == "Terminating"
    assert body["metadata"]["deletionTimestamp"]
    status, body = await api.request("POST", "/api/v1/namespaces/doomed/configmaps",
                                     json=cm("late"))
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    # an update of the terminating namespace does not remove it (spec.finalizers hold it)
    status, body = await api.request("PATCH", "/api/v1/namespaces/doomed", headers=MERGE,
                                     json={"metadata": {"labels": {"a": "b"}}})
    assert status == 200, body
    status, _ = await api.request("GET", "/api/v1/namespaces/doomed")
    assert status == 200


async def test_namespace_finalize_completes_deletion(api: Api) -> None:
    ns = await create(api, "/api/v1/namespaces", {"metadata": {"name": "fin"}})
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    # the main resource cannot change spec.finalizers
    status, body = await api.request("PATCH", "/api/v1/namespaces/fin", headers=MERGE,
                                     json={"spec": {"finalizers": []}})
    assert status == 200 and body["spec"]["finalizers"] == ["kubernetes"]
    status, body = await api.request("DELETE", "/api/v1/namespaces/fin")
    assert status == 200
    body["spec"]["finalizers"] = []
    status, body = await api.request("PUT", "/api/v1/namespaces/fin/finalize", json=body)
    assert status == 200, body
    status, _ = await api.request("GET", "/api/v1/namespaces/fin")
    assert status == 404


# -- 8. concurrency ---------------------------------------------------------------------

async def test_concurrent_patches_all_land(api: Api) -> None:
    await create(api, CMS, cm("busy"))

    async def label(i: int) -> int:
        status, _ = await api.request("PATCH", f"{CMS}/busy", headers=MERGE,
                                      json={"metadata": {"labels": {f"l{i}": "x"}}})
        return status
    statuses = await asyncio.gather(*(label(i) for i in range(20)))
    assert statuses == [200] * 20
    _, obj = await api.request("GET", f"{CMS}/busy")
    assert set(obj["metadata"]["labels"]) == {f"l{i}" for i in range(20)}


async def test_delete_racing_with_updates_succeeds(api: Api) -> None:
    await create(api, CMS, cm("racy", finalizers=["example.com/hold"]))

    async def touch(i: int) -> int:
        status, _ = await api.request("PATCH", f"{CMS}/racy", headers=MERGE,
                                      json={"data": {"n": str(i)}})
        return status
    results = await asyncio.gather(api.request("DELETE", f"{CMS}/racy"),
                                   *(touch(i) for i in range(10)))
    status, body = results[0]
    assert status == 200, body
    assert results[1:] == [200] * 10
    _, obj = await api.request("GET", f"{CMS}/racy")
    assert obj["metadata"]["deletionTimestamp"]


async def test_concurrent_creates_one_wins(api: Api) -> None:
    results = await asyncio.gather(*(api.request("POST", CMS, json=cm("race"))
                                     for _ in range(20)))
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] + [409] * 19
    assert all(b["reason"] == "AlreadyExists" for s, b in results if s == 409)


# -- 9. content negotiation -------------------------------------------------------------

async def test_partial_object_metadata_list(api: Api) -> None:
    await create(api, CMS, cm("meta"))
    status, body = await api.request("GET", CMS, headers={
        "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"})
    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("PartialObjectMetadataList",
                                                  "meta.k8s.io/v1")
    item = body["items"][0]
    assert item["kind"] == "PartialObjectMetadata" and "data" not in item
    assert item["metadata"]["name"] == "meta"


async def test_yaml_body(api: Api) -> None:
    raw = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: '1'\n"
    status, body = await api.request("POST", CMS, data=raw,
                                     headers={"Content-Type": "application/yaml"})
    assert status == 201, body
    assert body["data"] == {"a": "1"}


def _pb_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here are shorter than 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


async def test_protobuf_bodies(api: Api) -> None:
    protobuf = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    # truncated bytes cannot be decoded: 400, as Kubernetes answers
    status, body = await api.request("POST", CMS, data=b"k8s\x00\x0a", headers=protobuf)
    assert status == 400
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    # a well-formed envelope of a kind pinnace has no protobuf table for: 415, not a guess
    type_meta = _pb_field(1, b"v1") + _pb_field(2, b"Widget")
    status, body = await api.request("POST", CMS, data=b"k8s\x00" + _pb_field(1, type_meta),
                                     headers=protobuf)
    assert status == 415
    assert body["kind"] == "Status" and body["reason"] == "UnsupportedMediaType"


# -- 10. restart ------------------------------------------------------------------------

async def test_restart_keeps_objects_and_allocations(api: Api, tmp_path: Path) -> None:
    c = await create(api, CMS, cm("durable"))
    s = await create(api, SVCS, service("durable", "NodePort"))
    port = s["spec"]["ports"][0]["nodePort"]
    await api.server.stop()
    server = ApiServer(tmp_path / "data", port=0)
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            again = Api(server, session)
            status, got = await again.request("GET", f"{CMS}/durable")
            assert status == 200
            assert got["metadata"]["uid"] == c["metadata"]["uid"]
            assert got["metadata"]["resourceVersion"] == c["metadata"]["resourceVersion"]
            status, body = await again.request("POST", SVCS,
                                               json=service("other", "NodePort", port))
            assert status == 422, body
            _, k = await again.request("GET", f"{SVCS}/kubernetes")
            assert k["spec"]["clusterIP"] == "10.96.0.1"
    finally:
        await server.stop()


async def test_lists_and_watches_never_serve_a_stale_encoding(api: Api) -> None:
    """Objects are encoded once per version and shared: every write must show at once."""
    path = CMS + "/enc"
    status, first = await api.request("POST", CMS, json=cm("enc"))
    assert status == 201
    _, listed = await api.request("GET", CMS)
    rv = listed["metadata"]["resourceVersion"]
    status, _ = await api.request("PATCH", path, json={"data": {"k": "2"}},
                                  headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200
    _, listed = await api.request("GET", CMS)
    assert [o["data"] for o in listed["items"] if o["metadata"]["name"] == "enc"] == \
        [{"k": "2"}]
    await api.request("DELETE", path)
    status, again = await api.request("POST", CMS, json=cm("enc"))
    assert status == 201 and again["metadata"]["uid"] != first["metadata"]["uid"]
    _, listed = await api.request("GET", CMS)
    assert [o["metadata"]["uid"] for o in listed["items"]
            if o["metadata"]["name"] == "enc"] == [again["metadata"]["uid"]]
    async with api.session.get(f"{api.url}{CMS}?watch=true&resourceVersion={rv}",
                               headers={"Authorization": f"Bearer {api.server.token}"}) as w:
        seen = []
        while len(seen) < 3:
            line = await asyncio.wait_for(w.content.readline(), 5)
            ev = json.loads(line)
            seen.append((ev["type"], ev["object"]["metadata"]["uid"],
                         ev["object"].get("data")))
    assert seen == [("MODIFIED", first["metadata"]["uid"], {"k": "2"}),
                    ("DELETED", first["metadata"]["uid"], {"k": "2"}),
                    ("ADDED", again["metadata"]["uid"], cm("enc").get("data"))]
