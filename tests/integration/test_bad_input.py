"""Bad input gets a Kubernetes Status with a 4xx code naming the field — never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Api

PODS = "/api/v1/namespaces/default/pods"


def fields(body: dict) -> list[str]:
    return [c.get("field", "") for c in body.get("details", {}).get("causes", [])]


async def test_pod_without_containers(api: Api) -> None:
    status, body = await api.request("POST", PODS, json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {}})
    assert status == 422
    assert body["reason"] == "Invalid"
    assert "spec.containers" in fields(body)


async def test_name_with_capitals(api: Api) -> None:
    status, body = await api.request("POST", "/api/v1/namespaces/default/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "MyConfig"}})
    assert status == 422
    assert "metadata.name" in fields(body)
    assert "RFC 1123" in body["message"]


async def test_unknown_field_strict(api: Api) -> None:
    status, body = await api.request(
        "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
              "datta": {"a": "b"}})
    assert status == 400
    assert body["reason"] == "BadRequest"
    assert 'unknown field "datta"' in body["message"]


async def test_unknown_field_warn_is_pruned(api: Api) -> None:
    async with api.session.post(
            api.url + "/api/v1/namespaces/default/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"},
                  "datta": {"a": "b"}},
            headers={"Authorization": f"Bearer {api.server.token}"}) as resp:
        assert resp.status == 201
        assert 'unknown field \\"datta\\"' in resp.headers.get("Warning", "")
        body = await resp.json()
    assert "datta" not in body


async def test_wrong_type(api: Api) -> None:
    status, body = await api.request("POST", PODS, json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": "nginx"}})
    assert status == 400
    assert any(f.startswith("spec.containers") for f in fields(body)), body


async def test_unknown_kind(api: Api) -> None:
    status, body = await api.request("POST", "/apis/example.com/v1/namespaces/default/widgets",
                                     json={"apiVersion": "example.com/v1", "kind": "Widget"})
    assert status == 404
    assert body["kind"] == "Status"
    status, body = await api.request("POST", PODS, json={
        "apiVersion": "v1", "kind": "Widget", "metadata": {"name": "x"}})
    assert status == 400
    assert body["kind"] == "Status"


@pytest.mark.parametrize("raw", [b"{not json", b"\x00\xff\xfe", b"- a\n- : b: c\n  d", b""])
async def test_body_not_json_or_yaml(api: Api, raw: bytes) -> None:
    status, body = await api.request("POST", PODS, data=raw,
                                     headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert body["kind"] == "Status"


async def test_missing_namespace_is_404(api: Api) -> None:
    status, body = await api.request("POST", "/api/v1/namespaces/nowhere/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert status == 404
    assert body["details"]["kind"] == "namespaces"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "status", "name", "containers", "image", "labels",
                         "ports", "volumes", "data", "kind", "apiVersion", "replicas",
                         "selector", "template", "matchLabels", "x"]) | st.text(max_size=5),
        inner, max_size=4),
    max_leaves=20)

TARGETS = ["/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/services",
           "/apis/apps/v1/namespaces/default/deployments", "/apis/batch/v1/namespaces/default/jobs",
           "/api/v1/persistentvolumes", "/api/v1/namespaces/default/configmaps"]


SEEDS = {
    "/api/v1/namespaces/default/pods": {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "x"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "/api/v1/namespaces/default/services": {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "x"}, "spec": {"ports": [{"port": 80}]}},
    "/apis/apps/v1/namespaces/default/deployments": {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
    "/apis/batch/v1/namespaces/default/jobs": {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox"}]}}}},
    "/api/v1/persistentvolumes": {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "x"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/x"}}},
    "/api/v1/namespaces/default/configmaps": {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}},
}


async def seed(api: Api) -> None:
    """Objects named x, so updates and patches reach validation (not just a 404)."""
    for path, body in SEEDS.items():
        status, _ = await api.request("GET", f"{path}/x")
        if status == 404:
            status, out = await api.request("POST", path, json=body)
            assert status == 201, out


async def test_seed_objects_are_valid(api: Api) -> None:
    await seed(api)
    for path in SEEDS:
        assert (await api.request("GET", f"{path}/x"))[0] == 200


# Thousands of random bodies in all: the 6 targets x 6 methods share these examples.
@settings(max_examples=2500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(TARGETS), body=json_values,
       method=st.sampled_from(["POST", "PUT", "PATCH-merge", "PATCH-strategic", "PATCH-json",
                               "PATCH-apply"]))
async def test_random_bodies_never_5xx(api: Api, target: str, body, method: str) -> None:
    await seed(api)
    headers = {"Content-Type": "application/json"}
    path = target
    if method != "POST":
        path = target + "/x"
    if method.startswith("PATCH"):
        headers["Content-Type"] = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
            "apply": "application/apply-patch+yaml"}[method.split("-")[1]]
        method, path = "PATCH", path + "?fieldManager=fuzz"
    status, resp = await api.request(method, path, data=json.dumps(body), headers=headers)
    assert status < 500, (method, path, body, resp)
