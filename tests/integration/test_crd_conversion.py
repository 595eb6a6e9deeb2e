"""Conversion strategy `Webhook`: a real HTTPS conversion webhook on loopback (its own
CA as caBundle) turns v1's flat `spec.teeth` into v2's `spec.size.teeth` and back.
Objects written in either version read in both, kubectl included; a failing or slow
webhook is a 500 Status naming it, never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import Api, eventually, run_kubectl
from tests.integration.https_webhook import HttpsServer, serving_https
from tests.integration.test_api_semantics import watching
from tests.integration.test_custom_resources import create_crd

GROUP = "conv.example.com"


def gears(version: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{version}/namespaces/default/gears" + (f"/{name}" if name else "")


class Converter:
    """The webhook: v1 {teeth} <-> v2 {size: {teeth}}; `mode` breaks it on purpose."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.admitted: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        req = review["request"]
        if request.path == "/admit":  # an admission webhook beside the conversion one
            self.admitted.append(req)
            return web.json_response({"apiVersion": "admission.k8s.io/v1",
                                      "kind": "AdmissionReview",
                                      "response": {"uid": req["uid"], "allowed": True}})
        self.requests.append(req)
        if self.mode == "slow":
            await asyncio.sleep(15)
        if self.mode == "error":
            return web.Response(status=500, text="broken")
        result: dict[str, Any] = {"status": "Success"}
        converted = []
        for obj in req["objects"]:
            spec = dict(obj.get("spec") or {})
            if req["desiredAPIVersion"].endswith("/v2") and "teeth" in spec:
                spec["size"] = {"teeth": spec.pop("teeth")}
            elif req["desiredAPIVersion"].endswith("/v1") and "size" in spec:
                spec["teeth"] = spec.pop("size")["teeth"]
            converted.append({**obj, "apiVersion": req["desiredAPIVersion"], "spec": spec})
        if self.mode == "refuse":
            result, converted = {"status": "Failure", "message": "teeth cannot bend"}, []
        return web.json_response({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": req["uid"], "result": result,
                         "convertedObjects": converted}})


@pytest.fixture
async def converter(tmp_path: Path) -> AsyncIterator[tuple[Converter, HttpsServer]]:
    conv = Converter()
    async with serving_https(tmp_path, conv.handle) as server:
        yield conv, server


def gear_crd(server: HttpsServer) -> dict[str, Any]:
    def version(name: str, spec: dict[str, Any], storage: bool) -> dict[str, Any]:
        return {"name": name, "served": True, "storage": storage,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": spec}}}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gears.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "gears", "kind": "Gear"},
                 "versions": [
                     version("v1", {"teeth": {"type": "integer"}}, True),
                     version("v2", {"size": {"type": "object", "properties": {
                         "teeth": {"type": "integer"}}}}, False)],
                 "conversion": {"strategy": "Webhook", "webhook": {
                     "conversionReviewVersions": ["v1"],
                     "clientConfig": {"url": server.url("/convert"),
                                      "caBundle": server.ca_bundle}}}},
    }


def gear(version: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Gear",
            "metadata": {"name": name, "labels": {"made": version}}, "spec": spec}


async def test_objects_read_and_write_across_versions(
        api: Api, converter: tuple[Converter, HttpsServer]) -> None:
    conv, server = converter
    await create_crd(api, gear_crd(server))
    _, listed = await api.request("GET", gears("v2"))
    async with watching(api, f"{gears('v2')}?watch=true&resourceVersion="
                             f"{listed['metadata']['resourceVersion']}") as events:
        code, made = await api.request("POST", gears("v1"), json=gear("v1", "a", {"teeth": 12}))
        assert code == 201, made
        ev = await events.next()
        assert ev["object"]["apiVersion"] == f"{GROUP}/v2"
        assert ev["object"]["spec"] == {"size": {"teeth": 12}}
    code, got = await api.request("GET", gears("v2", "a"))
    assert code == 200 and got["spec"] == {"size": {"teeth": 12}}
    assert got["metadata"]["uid"] == made["metadata"]["uid"]

    # written as v2: stored as v1 (the storage version), answered as v2
    code, made = await api.request("POST", gears("v2"),
                                   json=gear("v2", "b", {"size": {"teeth": 30}}))
    assert code == 201, made
    assert made["apiVersion"] == f"{GROUP}/v2" and made["spec"] == {"size": {"teeth": 30}}
    assert any(r["desiredAPIVersion"] == f"{GROUP}/v1" and
               r["objects"][0]["metadata"]["name"] == "b" for r in conv.requests)
    _, got = await api.request("GET", gears("v1", "b"))
    assert got["spec"] == {"teeth": 30}
    # an update through v2 of an object stored as v1
    code, patched = await api.request("PATCH", gears("v2", "b"), json={
        "spec": {"size": {"teeth": 31}}}, headers={
        "Content-Type": "application/merge-patch+json"})
    assert code == 200 and patched["spec"] == {"size": {"teeth": 31}}, patched
    _, got = await api.request("GET", gears("v1", "b"))
    assert got["spec"] == {"teeth": 31}

    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "get",
                                     f"gears.v2.{GROUP}", "a", "-o",
                                     "jsonpath={.apiVersion} {.spec.size.teeth}")
    assert rc == 0, err
    assert out == f"{GROUP}/v2 12"


async def test_a_failing_webhook_is_a_clear_status(
        api: Api, converter: tuple[Converter, HttpsServer]) -> None:
    conv, server = converter
    await create_crd(api, gear_crd(server))
    code, _ = await api.request("POST", gears("v1"), json=gear("v1", "a", {"teeth": 5}))
    assert code == 201
    conv.mode = "refuse"
    code, status = await api.request("POST", gears("v2"),
                                     json=gear("v2", "b", {"size": {"teeth": 1}}))
    assert code == 500, status
    assert status["reason"] == "InternalError"
    assert status["message"] == (f"conversion webhook for {GROUP}/v2, Kind=Gear failed: "
                                 "conversion webhook returned failure: teeth cannot bend")
    code, _ = await api.request("GET", gears("v1", "b"))
    assert code == 404  # nothing was stored
    conv.mode = "error"
    await api.request("PUT", gears("v1", "a"), json={
        **gear("v1", "a", {"teeth": 6}), "metadata": {"name": "a"}})
    code, status = await api.request("GET", gears("v2", "a"))
    assert code == 500, status
    # the cached v2 copy of "a" failed under "refuse" too, and is retried each second: the
    # message names whichever failure came last, both in Kubernetes' words
    assert status["message"].startswith(
        f"conversion webhook for {GROUP}/v1, Kind=Gear failed: "), status
    assert "the server responded with status 500" in status["message"] or \
        status["message"].endswith("teeth cannot bend"), status
    code, status = await api.request("GET", gears("v2"))
    assert code == 500 and "conversion webhook" in status["message"]
    # once the webhook works again, the object reads in v2 without being written
    conv.mode = "ok"

    async def readable() -> bool:
        code, got = await api.request("GET", gears("v2", "a"))
        return code == 200 and got["spec"] == {"size": {"teeth": 6}}
    await eventually(readable, within=5)


async def test_a_slow_webhook_times_out(api: Api,
                                        converter: tuple[Converter, HttpsServer]) -> None:
    conv, server = converter
    await create_crd(api, gear_crd(server))
    conv.mode = "slow"
    # the webhook sleeps 15 s; the server gives it 10 (wait_for fails the test on a hang)
    code, status = await asyncio.wait_for(api.request(
        "POST", gears("v2"), json=gear("v2", "late", {"size": {"teeth": 1}})), 14)
    assert code == 500
    assert "context deadline exceeded" in status["message"], status


async def test_webhook_conversion_needs_a_webhook(api: Api) -> None:
    definition = gear_crd(HttpsServer(1, ""))
    del definition["spec"]["conversion"]["webhook"]
    code, status = await api.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=definition)
    assert code == 422, status
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.conversion.webhook"]


async def test_admission_webhook_for_an_equivalent_version(
        api: Api, converter: tuple[Converter, HttpsServer]) -> None:
    conv, server = converter
    await create_crd(api, gear_crd(server))
    for name, policy in (("equivalent", "Equivalent"), ("exact", "Exact")):
        code, body = await api.request(
            "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            json={"apiVersion": "admissionregistration.k8s.io/v1",
                  "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
                  "webhooks": [{"name": f"{name}.conv.example.com", "matchPolicy": policy,
                                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                                "clientConfig": {"url": server.url("/admit"),
                                                 "caBundle": server.ca_bundle},
                                "rules": [{"operations": ["CREATE"], "apiGroups": [GROUP],
                                           "apiVersions": ["v1"],
                                           "resources": ["gears"]}]}]})
        assert code == 201, body
    code, made = await api.request("POST", gears("v2"),
                                   json=gear("v2", "seen", {"size": {"teeth": 3}}))
    assert code == 201, made
    # only the Equivalent webhook is called, for v1, with the object converted to v1
    assert len(conv.admitted) == 1
    req = conv.admitted[0]
    assert req["kind"] == {"group": GROUP, "version": "v1", "kind": "Gear"}
    assert req["requestKind"] == {"group": GROUP, "version": "v2", "kind": "Gear"}
    assert req["object"]["apiVersion"] == f"{GROUP}/v1"
    assert req["object"]["spec"] == {"teeth": 3}
