"""Status bodies byte for byte as kube-apiserver writes them: metav1.Status' Go field order
(kind, apiVersion, metadata, status, message, reason, details, code), details' own order
(name, group, kind, uid, causes, retryAfterSeconds), empty fields left out, and the newline
Go's json.Encoder ends every body with. Clients compare these bodies as strings (the
official Python client's e2e suite does), so the expected values are literal strings."""

from __future__ import annotations

import json

from tests.integration.conftest import Api


async def raw(api: Api, method: str, path: str, body: object | None = None) -> tuple[int, str]:
    async with api.session.request(method, api.url + path, json=body, headers={
            "Authorization": f"Bearer {api.server.token}"}) as resp:
        return resp.status, (await resp.read()).decode()


# how every failure body starts (kind, apiVersion, the empty metadata, status)
FAILURE = '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mock-2"},
           "spec": {"ports": [{"port": 80, "targetPort": 80}]}}


async def test_already_exists_is_kube_apiservers_body(api: Api) -> None:
    path = "/api/v1/namespaces/default/services"
    assert (await raw(api, "POST", path, SERVICE))[0] == 201
    code, body = await raw(api, "POST", path, SERVICE)
    assert code == 409
    assert body == FAILURE + (
        '"message":"services \\"mock-2\\" already exists","reason":"AlreadyExists",'
        '"details":{"name":"mock-2","kind":"services"},"code":409}\n')


async def test_not_found_with_group(api: Api) -> None:
    code, body = await raw(api, "GET", "/apis/apps/v1/namespaces/default/deployments/web")
    assert code == 404
    assert body == FAILURE + (
        '"message":"deployments.apps \\"web\\" not found","reason":"NotFound",'
        '"details":{"name":"web","group":"apps","kind":"deployments"},'
        '"code":404}\n')


async def test_unserved_path_has_empty_details(api: Api) -> None:
    # apimachinery's generic 404 carries a details pointer, so `{}` is written; a 400
    # (NewBadRequest) has none
    code, body = await raw(api, "GET", "/api/v1/namespaces/default/nothings")
    assert code == 404
    assert body == FAILURE + (
        '"message":"the server could not find the requested resource",'
        '"reason":"NotFound","details":{},"code":404}\n')
    code, body = await raw(api, "POST", "/api/v1/namespaces/default/configmaps"
                           "?fieldValidation=bogus", {"metadata": {"name": "c"}})
    assert code == 400
    assert body == FAILURE + (
        '"message":"fieldValidation bogus is invalid, valid values are: Ignore, '
        'Warn, Strict","reason":"BadRequest","code":400}\n')


async def test_invalid_lists_causes_in_go_order(api: Api) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}
    code, body = await raw(api, "POST", "/api/v1/namespaces/default/configmaps", cm)
    assert code == 422
    # causes: reason, message, field; details before code
    assert body.startswith(FAILURE + '"message":"ConfigMap \\"Bad_Name\\" is invalid: ')
    assert ',"reason":"Invalid","details":{"name":"Bad_Name","kind":"ConfigMap","causes":' \
           '[{"reason":"FieldValueInvalid","message":' in body
    assert body.endswith('"field":"metadata.name"}]},"code":422}\n')


async def test_delete_success_status(api: Api) -> None:
    # ConfigMaps answer a delete with a Success Status (Services return the object)
    path = "/api/v1/namespaces/default/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert (await raw(api, "POST", path, cm))[0] == 201
    uid = json.loads((await raw(api, "GET", path + "/c"))[1])["metadata"]["uid"]
    code, body = await raw(api, "DELETE", path + "/c")
    assert code == 200
    assert body == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",'
                    f'"details":{{"name":"c","kind":"configmaps","uid":"{uid}"}}}}\n')
