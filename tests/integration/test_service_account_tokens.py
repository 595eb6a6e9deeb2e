"""ServiceAccount tokens through a real API server: TokenRequest, the authenticator, OIDC
discovery, the ServiceAccount admission, kubectl create token, and the controllers that
publish kube-root-ca.crt and fill legacy token Secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from pinnace.controllers.root_ca_publisher import RootCAPublisher
from pinnace.controllers.serviceaccount_tokens import TokensController
from tests.integration.conftest import Api, Components, eventually, run_kubectl, running_api

SA_PATH = "/api/v1/namespaces/default/serviceaccounts"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture
async def sa_api(tmp_path: Path) -> AsyncIterator[Api]:
    """An API server with the ServiceAccount admission on (and no controllers: the tests
    make the ServiceAccounts they need)."""
    async with running_api(tmp_path / "data", service_account_admission=True) as api:
        yield api


async def make_sa(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    status, sa = await api.request("POST", SA_PATH, json={"metadata": {"name": name},
                                                          **fields})
    assert status == 201, sa
    return sa


async def request_token(api: Api, sa: str, spec: dict[str, Any]) -> tuple[int, Any]:
    return await api.request("POST", f"{SA_PATH}/{sa}/token", json={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})


async def whoami(api: Api, token: str) -> tuple[int, Any]:
    return await api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             json={"apiVersion": "authentication.k8s.io/v1",
                                   "kind": "SelfSubjectReview"}, token=token)


async def test_token_request_issues_a_token_the_api_accepts(api: Api) -> None:
    sa = await make_sa(api, "robot")
    status, answer = await request_token(api, "robot", {"expirationSeconds": 600})
    assert status == 201, answer
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["audiences"] == [ISSUER]
    token = answer["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER]
    assert claims["exp"] - claims["iat"] == 600 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {"namespace": "default", "serviceaccount": {
        "name": "robot", "uid": sa["metadata"]["uid"]}}
    status, review = await whoami(api, token)
    assert status == 201, review
    assert review["status"]["userInfo"] == {
        "username": "system:serviceaccount:default:robot", "uid": sa["metadata"]["uid"],
        "groups": ["system:serviceaccounts", "system:serviceaccounts:default",
                   "system:authenticated"]}
    # RBAC applies to it: nothing granted yet
    status, body = await api.request("GET", "/api/v1/namespaces/default/pods", token=token)
    assert status == 403
    assert 'User "system:serviceaccount:default:robot" cannot list resource "pods"' \
        in body["message"]
    # deleting the ServiceAccount revokes the token at once
    status, _ = await api.request("DELETE", f"{SA_PATH}/robot")
    assert status == 200
    status, body = await whoami(api, token)
    assert status == 401 and body["reason"] == "Unauthorized"
    # a namesake created again does not bring the old token back (other uid)
    await make_sa(api, "robot")
    status, _ = await whoami(api, token)
    assert status == 401


async def test_token_request_checks_its_spec(api: Api) -> None:
    await make_sa(api, "robot")
    status, body = await request_token(api, "robot", {"expirationSeconds": 599})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    assert "may not specify a duration less than 10 minutes" in body["message"]
    status, body = await request_token(api, "ghost", {})
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'
    status, body = await request_token(api, "robot", {"boundObjectRef": {
        "kind": "ConfigMap", "apiVersion": "v1", "name": "x"}})
    assert status == 400
    status, body = await request_token(api, "robot", {"boundObjectRef": {
        "kind": "Pod", "apiVersion": "v1", "name": "nope"}})
    assert status == 404 and body["message"] == 'pods "nope" not found'
    status, body = await api.request("GET", f"{SA_PATH}/robot/token")
    assert status == 405


async def test_other_audiences_and_bound_objects(api: Api) -> None:
    await make_sa(api, "robot")
    status, answer = await request_token(api, "robot", {"audiences": ["vault"]})
    assert status == 201
    assert answer["spec"]["expirationSeconds"] == 3600
    status, _ = await whoami(api, answer["status"]["token"])
    assert status == 401  # not for this API
    status, secret = await api.request("POST", "/api/v1/namespaces/default/secrets",
                                       json={"metadata": {"name": "anchor"}})
    assert status == 201
    ref = {"kind": "Secret", "apiVersion": "v1", "name": "anchor"}
    status, body = await request_token(api, "robot", {"boundObjectRef": {**ref,
                                                                         "uid": "other"}})
    assert status == 409 and "does not match the UID in record" in body["message"]
    status, answer = await request_token(api, "robot", {"boundObjectRef": ref})
    assert status == 201
    assert answer["spec"]["boundObjectRef"]["uid"] == secret["metadata"]["uid"]
    token = answer["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["secret"] == {"name": "anchor",
                                                 "uid": secret["metadata"]["uid"]}
    assert (await whoami(api, token))[0] == 201
    await api.request("DELETE", "/api/v1/namespaces/default/secrets/anchor")
    assert (await whoami(api, token))[0] == 401  # its Secret is gone


async def test_oidc_discovery_and_keys_verify_tokens(api: Api) -> None:
    await make_sa(api, "robot")
    _, answer = await request_token(api, "robot", {})
    token = answer["status"]["token"]
    status, config = await api.request("GET", "/.well-known/openid-configuration", token=token)
    assert status == 200, config
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == ISSUER + "/openid/v1/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    async with api.session.get(api.url + "/openid/v1/jwks",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/jwk-set+json"
        keys = json.loads(await resp.read())["keys"]
    assert keys[0]["kid"] == jwt.get_unverified_header(token)["kid"]
    # a third party verifies the token with the published key alone
    key = jwt.PyJWK(keys[0])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=ISSUER)
    assert claims["sub"] == "system:serviceaccount:default:robot"
    # anonymous callers may not read it
    status, _ = await api.request("GET", "/openid/v1/jwks", token=None)
    assert status == 401
    # the key file is root's alone
    assert (api.server.data_dir / "pki" / "service-account.key").stat().st_mode & 0o777 == 0o600


async def test_kubectl_create_token(api: Api, tmp_path: Path) -> None:
    kubeconfig = api.server.write_kubeconfig()
    await make_sa(api, "robot")
    code, out, err = await run_kubectl(kubeconfig, "create", "token", "robot",
                                       "--duration=10m", "--audience=api", "--audience=other",
                                       home=tmp_path)
    assert code == 0, err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["aud"] == ["api", "other"] and claims["exp"] - claims["iat"] == 600
    status, pod = await api.request("POST", "/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert status == 201
    code, out, err = await run_kubectl(kubeconfig, "create", "token", "robot",
                                       "--bound-object-kind", "Pod", "--bound-object-name",
                                       "p", home=tmp_path)
    assert code == 0, err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}
    code, out, err = await run_kubectl(kubeconfig, "create", "token", "robot",
                                       "--duration=1m", home=tmp_path)
    assert code != 0 and "may not specify a duration less than 10 minutes" in err


async def test_admission_mounts_the_api_access_volume(sa_api: Api) -> None:
    api = sa_api
    await make_sa(api, "default")
    pod = {"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "init", "image": "x"}],
        "containers": [{"name": "c", "image": "x"}]}}
    status, created = await api.request("POST", "/api/v1/namespaces/default/pods", json=pod)
    assert status == 201, created
    spec = created["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    volume = spec["volumes"][-1]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == 21
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]
    mount = {"name": volume["name"], "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert spec["containers"][0]["volumeMounts"] == [mount]
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    # opted out on the pod, or on its ServiceAccount: nothing mounted
    await make_sa(api, "quiet", automountServiceAccountToken=False)
    for name, extra in (("off", {"automountServiceAccountToken": False}),
                        ("quiet", {"serviceAccountName": "quiet"})):
        status, created = await api.request("POST", "/api/v1/namespaces/default/pods", json={
            "metadata": {"name": name}, "spec": {**pod["spec"], **extra}})
        assert status == 201, created
        assert not created["spec"].get("volumes")
        assert not created["spec"]["containers"][0].get("volumeMounts")
    # a ServiceAccount that does not exist: refused, as Kubernetes words it
    status, body = await api.request("POST", "/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "lost"}, "spec": {**pod["spec"], "serviceAccountName": "ghost"}})
    assert status == 403
    assert body["message"] == ('pods "lost" is forbidden: error looking up service account '
                               'default/ghost: serviceaccount "ghost" not found')


async def test_root_ca_publisher_and_legacy_tokens(api: Api, client: Any,
                                                   components: Components) -> None:
    keys = api.server.service_account_tokens.keys  # type: ignore[union-attr]
    await components.start(
        RootCAPublisher(client, components.factory, root_ca=api.server.ca_pem),
        TokensController(client, components.factory, keys=keys, root_ca=api.server.ca_pem))
    cm_rt = client.resource("v1", "ConfigMap")

    async def published(namespace: str) -> bool:
        try:
            cm = await client.get(cm_rt, "kube-root-ca.crt", namespace)
        except Exception:
            return False
        return cm["data"] == {"ca.crt": api.server.ca_pem.decode()}
    await eventually(lambda: published("kube-system"))
    await client.create(client.resource("v1", "Namespace"), {"metadata": {"name": "team"}})
    await eventually(lambda: published("team"))
    # changed by hand: put back
    cm = await client.get(cm_rt, "kube-root-ca.crt", "team")
    await client.update(cm_rt, {**cm, "data": {"ca.crt": "forged"}})
    await eventually(lambda: published("team"))

    sa = await make_sa(api, "legacy")
    secret_rt = client.resource("v1", "Secret")
    await client.create(secret_rt, {"metadata": {"name": "legacy-token", "annotations": {
        "kubernetes.io/service-account.name": "legacy"}},
        "type": "kubernetes.io/service-account-token"}, "default")

    async def filled() -> dict[str, Any] | None:
        s = await client.get(secret_rt, "legacy-token", "default")
        return s if (s.get("data") or {}).get("token") else None
    await eventually(filled)
    secret = await client.get(secret_rt, "legacy-token", "default")
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == \
        sa["metadata"]["uid"]
    assert base64.b64decode(secret["data"]["namespace"]) == b"default"
    assert base64.b64decode(secret["data"]["ca.crt"]) == api.server.ca_pem
    token = base64.b64decode(secret["data"]["token"]).decode()
    status, review = await whoami(api, token)
    assert status == 201
    assert review["status"]["userInfo"]["username"] == "system:serviceaccount:default:legacy"
    # the ServiceAccount goes: its token is refused, and the Secret is deleted
    await api.request("DELETE", f"{SA_PATH}/legacy")
    assert (await whoami(api, token))[0] == 401

    async def secret_gone() -> bool:
        status, _ = await api.request("GET",
                                      "/api/v1/namespaces/default/secrets/legacy-token")
        return status == 404
    await eventually(secret_gone)
