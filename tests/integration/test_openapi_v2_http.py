"""GET /openapi/v2 over HTTPS as kube-apiserver answers it: content negotiation between
JSON and gnostic protobuf, one ETag for both (Vary: Accept), 304 on If-None-Match and
406 for a type it cannot write."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Api

PROTOBUF_ASKED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
PROTOBUF_ANSWERED = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


async def get(api: Api, accept: str | None, **headers: str) -> tuple[int, Any, bytes]:
    hdrs = {"Authorization": f"Bearer {api.server.token}", **headers}
    if accept is not None:
        hdrs["Accept"] = accept
    async with api.session.get(api.url + "/openapi/v2", headers=hdrs) as resp:
        return resp.status, resp.headers.copy(), await resp.read()  # case-insensitive


async def test_openapi_v2_negotiation(api: Api) -> None:
    status, headers, body = await get(api, "application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Vary"] == "Accept"
    doc = json.loads(body)
    assert doc["swagger"] == "2.0" and "io.k8s.api.core.v1.Pod" in doc["definitions"]

    status, proto_headers, proto = await get(api, PROTOBUF_ASKED)
    assert status == 200 and proto_headers["Content-Type"] == PROTOBUF_ANSWERED
    assert proto.startswith(b"\x0a\x032.0")  # Document.swagger = "2.0"
    assert proto_headers["ETag"] == headers["ETag"]

    status, _, body = await get(api, PROTOBUF_ASKED, **{"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert (await get(api, "text/html"))[0] == 406
    assert (await get(api, None))[2] == (await get(api, "application/json"))[2]
