"""Admission webhooks and ValidatingAdmissionPolicy against a real API server.

The webhooks are a tiny HTTPS server on loopback in this process, with a CA of its own
that the configurations carry as caBundle; requests go through kubectl and through
the HTTP API as a client sends them."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.conftest import Api, run_kubectl
from tests.integration.https_webhook import make_cert, serving_https

ADM = "/apis/admissionregistration.k8s.io/v1"
CM = "/api/v1/namespaces/default/configmaps"


@dataclass
class Webhook:
    """An HTTPS admission webhook server on loopback; `reviews` holds what it got."""

    port: int = 0
    ca_bundle: str = ""
    reviews: list[dict[str, Any]] = field(default_factory=list)


async def _handle(hook: Webhook, request: web.Request) -> web.Response:
    review = await request.json()
    hook.reviews.append(review)
    req = review["request"]
    response: dict[str, Any] = {"uid": req["uid"], "allowed": True}
    obj = req.get("object") or {}
    if request.path == "/validate" and (obj.get("data") or {}).get("bad"):
        response = {"uid": req["uid"], "allowed": False,
                    "status": {"code": 403, "message": "bad data is not allowed here"}}
    elif request.path == "/mutate":
        ops = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        response["warnings"] = ["labelled by the webhook"]
    elif request.path == "/slow":
        await asyncio.sleep(3)  # past the configuration's 1 s
    return web.json_response({"apiVersion": "admission.k8s.io/v1",
                              "kind": "AdmissionReview", "response": response})


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[Webhook]:
    hook = Webhook()

    async def handle(request: web.Request) -> web.Response:
        return await _handle(hook, request)
    async with serving_https(tmp_path, handle) as server:
        hook.port, hook.ca_bundle = server.port, server.ca_bundle
        yield hook


def _config(kind: str, name: str, client: dict[str, Any], **hook: Any) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": name},
            "webhooks": [{"name": name, "clientConfig": client, "sideEffects": "None",
                          "admissionReviewVersions": ["v1"],
                          "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                                     "apiVersions": ["v1"], "resources": ["configmaps"]}],
                          **hook}]}


async def _create(api: Api, path: str, body: dict[str, Any]) -> None:
    status, out = await api.request("POST", path, json=body)
    assert status == 201, out


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_validating_webhook_denies_with_its_message(api: Api, webhook: Webhook):
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "deny.example.com",
        {"url": f"https://127.0.0.1:{webhook.port}/validate", "caBundle": webhook.ca_bundle}))
    kubeconfig = api.server.write_kubeconfig()
    rc, _, err = await run_kubectl(kubeconfig, "create", "configmap", "evil",
                                   "--from-literal=bad=1")
    assert rc != 0
    assert 'admission webhook "deny.example.com" denied the request: bad data is not ' \
        'allowed here' in err
    rc, _, err = await run_kubectl(kubeconfig, "create", "configmap", "good",
                                     "--from-literal=fine=1")
    assert rc == 0, err
    # what the webhook was sent: an AdmissionReview v1 naming the request and its caller
    req = webhook.reviews[-1]["request"]
    assert req["operation"] == "CREATE" and req["name"] == "good"
    assert req["namespace"] == "default" and req["oldObject"] is None
    assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert req["userInfo"]["username"] and req["uid"]
    assert req["object"]["data"] == {"fine": "1"}
    assert req["options"]["kind"] == "CreateOptions"
    status, _ = await api.request("GET", f"{CM}/evil")
    assert status == 404


async def test_mutating_webhook_patch_lands_before_validation(api: Api, webhook: Webhook):
    await _create(api, f"{ADM}/mutatingwebhookconfigurations", _config(
        "MutatingWebhookConfiguration", "label.example.com",
        {"url": f"https://127.0.0.1:{webhook.port}/mutate", "caBundle": webhook.ca_bundle}))
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "create", "configmap",
                                   "plain", "--from-literal=a=b")
    assert rc == 0, err
    assert "labelled by the webhook" in err  # warnings reach kubectl
    status, cm = await api.request("GET", f"{CM}/plain")
    assert cm["metadata"]["labels"] == {"mutated": "yes"}
    # an update is sent with the old object; dry run reaches a side-effect-free webhook
    cm["data"]["a"] = "c"
    status, out = await api.request("PUT", f"{CM}/plain?dryRun=All", json=cm)
    assert status == 200, out
    req = webhook.reviews[-1]["request"]
    assert req["operation"] == "UPDATE" and req["dryRun"] is True
    assert req["oldObject"]["data"] == {"a": "b"}


async def test_dead_webhook_failure_policy(api: Api, webhook: Webhook):
    # a port nothing listens on: the webhook is unreachable
    dead = {"url": "https://127.0.0.1:9/validate", "caBundle": webhook.ca_bundle}
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "ignored.example.com", dead,
        failurePolicy="Ignore"))
    status, out = await api.request("POST", CM, json=_cm("passes"))
    assert status == 201, out
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "strict.example.com", dead, failurePolicy="Fail"))
    status, out = await api.request("POST", CM, json=_cm("refused"))
    assert status == 500
    assert out["message"].startswith(
        'Internal error occurred: failed calling webhook "strict.example.com": failed to '
        'call webhook: Post "https://127.0.0.1:9/validate?timeout=10s": ')
    # webhook configurations themselves are never sent to webhooks: it can be removed
    status, _ = await api.request(
        "DELETE", f"{ADM}/validatingwebhookconfigurations/strict.example.com")
    assert status == 200
    status, out = await api.request("POST", CM, json=_cm("again"))
    assert status == 201, out


async def test_slow_webhook_times_out(api: Api, webhook: Webhook):
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "slow.example.com",
        {"url": f"https://127.0.0.1:{webhook.port}/slow", "caBundle": webhook.ca_bundle},
        timeoutSeconds=1))
    status, out = await api.request("POST", CM, json=_cm("waits"))
    assert status == 500
    assert 'failed calling webhook "slow.example.com"' in out["message"]
    assert out["message"].endswith("?timeout=1s\": context deadline exceeded")


async def test_wrong_ca_bundle_is_a_call_failure(api: Api, webhook: Webhook):
    other = ec.generate_private_key(ec.SECP256R1())
    stranger = make_cert("another-ca", other, other, None, ca=True)
    bundle = base64.b64encode(stranger.public_bytes(serialization.Encoding.PEM)).decode()
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "untrusted.example.com",
        {"url": f"https://127.0.0.1:{webhook.port}/validate", "caBundle": bundle}))
    status, out = await api.request("POST", CM, json=_cm("x"))
    assert status == 500 and "certificate verify failed" in out["message"]
    assert not webhook.reviews


async def test_webhook_by_service_and_selectors(api: Api, webhook: Webhook):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook"},
           "spec": {"ports": [{"name": "https", "port": 443, "targetPort": webhook.port}]}}
    await _create(api, "/api/v1/namespaces/default/services", svc)
    await _create(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "webhook-1",
                     "labels": {"kubernetes.io/service-name": "webhook"}},
        "addressType": "IPv4", "ports": [{"name": "https", "port": webhook.port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]})
    await _create(api, f"{ADM}/validatingwebhookconfigurations", _config(
        "ValidatingWebhookConfiguration", "svc.example.com",
        {"service": {"namespace": "default", "name": "webhook", "path": "/validate"},
         "caBundle": webhook.ca_bundle},
        objectSelector={"matchLabels": {"checked": "yes"}}))
    # not selected by objectSelector: the webhook is not called
    status, out = await api.request("POST", CM, json=_cm("unchecked", bad="1"))
    assert status == 201, out
    body = _cm("checked", bad="1")
    body["metadata"]["labels"] = {"checked": "yes"}
    status, out = await api.request("POST", CM, json=body)
    assert status == 403, out
    assert out["message"] == 'admission webhook "svc.example.com" denied the request: ' \
        'bad data is not allowed here'


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]}, **spec}}


def _binding(name: str, policy: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
            "spec": {"policyName": policy, "validationActions": ["Deny"], **spec}}


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "c", "image": "busybox"}]}}}}


async def test_validating_admission_policy_denies_with_params(api: Api, tmp_path: Path):
    await _create(api, CM, {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "limits"}, "data": {"maxReplicas": "3"}})
    await _create(api, f"{ADM}/validatingadmissionpolicies", _policy(
        "replica-limit", paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
        variables=[{"name": "limit", "expression": "int(params.data.maxReplicas)"}],
        validations=[{"expression": "object.spec.replicas <= variables.limit",
                      "messageExpression": "'replicas must be at most ' + "
                                           "string(variables.limit)",
                      "reason": "Invalid"}]))
    await _create(api, f"{ADM}/validatingadmissionpolicybindings", _binding(
        "replica-limit-default", "replica-limit",
        paramRef={"name": "limits", "namespace": "default",
                  "parameterNotFoundAction": "Deny"}))
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "get",
                                     "validatingadmissionpolicybindings")
    assert rc == 0, err
    assert out.split("\n")[1].split()[:3] == [
        "replica-limit-default", "replica-limit", "default/limits"]
    manifest = tmp_path / "deploy.json"
    manifest.write_text(json.dumps(_deployment("big", 5)))
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "apply", "-f",
                                   str(manifest))
    assert rc != 0
    assert "ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-default' " \
        "denied request: replicas must be at most 3" in err
    status, out = await api.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                                    json=_deployment("small", 2))
    assert status == 201, out
    # an update past the limit is refused too (422, reason Invalid)
    out["spec"]["replicas"] = 4
    status, out = await api.request(
        "PUT", "/apis/apps/v1/namespaces/default/deployments/small", json=out)
    assert status == 422 and out["reason"] == "Invalid", out


async def test_policy_warn_action_and_failure_policy(api: Api):
    await _create(api, f"{ADM}/validatingadmissionpolicies", _policy(
        "named", validations=[{"expression": "object.metadata.name.startsWith('app-')",
                               "message": "names start with app-"}]))
    await _create(api, f"{ADM}/validatingadmissionpolicybindings", _binding(
        "named-warn", "named", validationActions=["Warn"]))
    async with api.session.post(
            api.url + "/apis/apps/v1/namespaces/default/deployments",
            json=_deployment("web", 1),
            headers={"Authorization": f"Bearer {api.server.token}"}) as resp:
        assert resp.status == 201
        assert "names start with app-" in resp.headers.get("Warning", "")
    # a rule that cannot evaluate: Fail refuses, naming the expression
    await _create(api, f"{ADM}/validatingadmissionpolicies", _policy(
        "broken", validations=[{"expression": "object.spec.nothing == 1"}]))
    await _create(api, f"{ADM}/validatingadmissionpolicybindings", _binding(
        "broken", "broken"))
    status, out = await api.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                                    json=_deployment("app-x", 1))
    assert status == 422
    assert "ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: " \
        "expression 'object.spec.nothing == 1' resulted in error" in out["message"]


async def test_bad_configurations_are_422_with_field_paths(api: Api):
    hook = _config("ValidatingWebhookConfiguration", "plain.example.com",
                   {"url": "http://127.0.0.1:1/x"}, timeoutSeconds=31)
    status, out = await api.request("POST", f"{ADM}/validatingwebhookconfigurations",
                                    json=hook)
    assert status == 422, out
    fields = {c["field"]: c["message"] for c in out["details"]["causes"]}
    assert "'https' is the only allowed URL scheme" in fields["webhooks[0].clientConfig.url"]
    assert "between 1 and 30 seconds" in fields["webhooks[0].timeoutSeconds"]
    status, out = await api.request("POST", f"{ADM}/validatingadmissionpolicies", json=_policy(
        "bad-cel", validations=[{"expression": "object.spec.replicas <"}]))
    assert status == 422, out
    (cause,) = out["details"]["causes"]
    assert cause["field"] == "spec.validations[0].expression"
    assert "compilation failed" in cause["message"]
    status, out = await api.request(
        "POST", f"{ADM}/validatingadmissionpolicybindings",
        json=_binding("both", "p", validationActions=["Deny", "Warn"]))
    assert status == 422 and out["details"]["causes"][0]["field"] == "spec.validationActions"


async def test_configurations_read_back_with_kubernetes_defaults(api: Api, webhook: Webhook):
    await _create(api, f"{ADM}/mutatingwebhookconfigurations", _config(
        "MutatingWebhookConfiguration", "defaults.example.com",
        {"service": {"namespace": "default", "name": "webhook"}}))
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "get",
                                     "mutatingwebhookconfigurations", "-o", "json")
    assert rc == 0, err
    (hook,) = json.loads(out)["items"][0]["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 10
    assert hook["matchPolicy"] == "Equivalent" and hook["reinvocationPolicy"] == "Never"
    assert hook["namespaceSelector"] == {} and hook["rules"][0]["scope"] == "*"
    assert hook["clientConfig"]["service"]["port"] == 443
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), "get",
                                     "mutatingwebhookconfigurations")
    assert rc == 0, err
    assert out.split("\n")[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    assert out.split("\n")[1].split()[:2] == ["defaults.example.com", "1"]
