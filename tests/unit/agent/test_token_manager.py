"""The node agent's token manager: one TokenRequest per pod and audience, renewed at 80 %
of the lifetime (or after 24 h), the old token kept while a renewal fails."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.agent.volumes.token_manager import TokenManager
from pinnace.api.errors import ApiError
from pinnace.api.kinds import REGISTRY
from pinnace.api.timestamps import format_time

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
       "spec": {"serviceAccountName": "robot"}}


class Api:
    """Answers TokenRequests as the API server does (the transport seam of a client)."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = False

    def resource(self, api_version: str, kind: str) -> Any:
        return REGISTRY.by_kind("", api_version, kind)

    async def post_subresource(self, rt: Any, name: str, subresource: str,
                               body: dict[str, Any], namespace: str | None = None) -> Any:
        assert (rt.kind, subresource) == ("ServiceAccount", "token")
        if self.fail:
            raise ApiError(503, "ServiceUnavailable", "down")
        self.requests.append((f"{namespace}/{name}", subresource, body))
        seconds = body["spec"]["expirationSeconds"]
        return {"status": {"token": f"t{len(self.requests)}",
                           "expirationTimestamp": format_time(self.clock[0] + seconds)}}


async def test_renewed_at_80_percent_and_bound_to_the_pod() -> None:
    clock = [1_000_000.0]
    api = Api(clock)
    tokens = TokenManager(api, clock=lambda: clock[0])
    assert await tokens.token(POD, audience="", expiration_seconds=3607) == "t1"
    [(sa, _, body)] = api.requests
    assert sa == "ns/robot"
    assert body["spec"] == {"audiences": [], "expirationSeconds": 3607, "boundObjectRef": {
        "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1"}}
    clock[0] += 0.8 * 3607 - 2
    assert await tokens.token(POD, audience="", expiration_seconds=3607) == "t1"
    clock[0] += 2
    assert await tokens.token(POD, audience="", expiration_seconds=3607) == "t2"
    # another audience is another token
    assert await tokens.token(POD, audience="vault", expiration_seconds=3607) == "t3"
    assert api.requests[-1][2]["spec"]["audiences"] == ["vault"]


async def test_failed_renewal_keeps_the_valid_token_and_24h_cap() -> None:
    clock = [1_000_000.0]
    api = Api(clock)
    tokens = TokenManager(api, clock=lambda: clock[0])
    assert await tokens.token(POD, audience="", expiration_seconds=1000) == "t1"
    api.fail = True
    clock[0] += 900  # due, and the API is down: the old one is still good
    assert await tokens.token(POD, audience="", expiration_seconds=1000) == "t1"
    clock[0] += 100  # expired now: the failure shows
    with pytest.raises(ApiError):
        await tokens.token(POD, audience="", expiration_seconds=1000)
    api.fail = False
    year = 365 * 24 * 3600
    assert await tokens.token(POD, audience="", expiration_seconds=year) == "t2"
    clock[0] += 24 * 3600 + 1  # far from 80 % of a year, but older than a day
    assert await tokens.token(POD, audience="", expiration_seconds=year) == "t3"
    tokens.forget("u1")
    assert await tokens.token(POD, audience="", expiration_seconds=year) == "t4"
