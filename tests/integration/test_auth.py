"""Authentication is on by default: HTTPS and a bearer token."""

from __future__ import annotations

from tests.integration.conftest import Api


async def test_no_token_is_401(api: Api) -> None:
    status, body = await api.request("GET", "/api/v1/namespaces", token=None)
    assert status == 401
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized"


async def test_wrong_token_is_401(api: Api) -> None:
    status, body = await api.request("GET", "/api/v1/pods", token="not-the-token")
    assert status == 401
    assert body["code"] == 401


async def test_right_token_lists(api: Api) -> None:
    status, body = await api.request("GET", "/api/v1/namespaces")
    assert status == 200
    names = {ns["metadata"]["name"] for ns in body["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


async def test_version_and_health_are_public(api: Api) -> None:
    status, body = await api.request("GET", "/version", token=None)
    assert status == 200 and body["major"] == "1" and body["minor"] == "32"
    status, body = await api.request("GET", "/healthz", token=None)
    assert status == 200 and body == "ok"
