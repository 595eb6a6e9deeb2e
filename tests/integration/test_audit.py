"""The audit log of a real API server: a policy's rules decide each request's level, and
the stages are written as Kubernetes writes them (a watch: RequestReceived,
ResponseStarted once its headers are out, ResponseComplete when it ends)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pinnace.apiserver.audit import Policy
from pinnace.apiserver.auth import User
from pinnace.apiserver.rbac import request_attributes
from pinnace.cluster import Cluster, ClusterConfig

POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
        {"level": "None", "users": ["quiet"]},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "Request", "namespaces": ["team"], "verbs": ["create"]},
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["configmaps"]}],
         "omitStages": ["RequestReceived"]},
        {"level": "Metadata"},
    ]}


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path


def test_first_matching_rule_decides(policy_file: Path) -> None:
    policy = Policy.load(policy_file)

    def decide(user: str, method: str, path: str) -> str:
        return policy.decide(request_attributes(User(user), method, path, {}))[0]

    assert decide("alice", "GET", "/healthz") == "None"
    assert decide("alice", "GET", "/healthz/ready") == "None"
    assert decide("alice", "GET", "/apis") == "Metadata"
    assert decide("quiet", "POST", "/api/v1/namespaces/default/configmaps") == "None"
    assert decide("alice", "GET", "/api/v1/namespaces/team/secrets/s") == "Metadata"
    assert decide("alice", "POST", "/api/v1/namespaces/team/pods") == "Request"
    assert decide("alice", "GET", "/api/v1/namespaces/team/pods") == "Metadata"
    assert decide("alice", "PUT", "/api/v1/namespaces/x/configmaps/c") == "RequestResponse"


@pytest.fixture
async def audited(tmp_path: Path, policy_file: Path) -> AsyncIterator[tuple[Any, Any]]:
    cluster = Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0, controllers=False,
                                    scheduler=False, audit_policy_file=policy_file,
                                    audit_log_path=tmp_path / "audit.jsonl"))
    await cluster.start()
    ctx = ssl.create_default_context(cadata=cluster.server.ca_pem.decode())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), base_url=cluster.server.url,
        headers={"Authorization": f"Bearer {cluster.server.token}"})
    try:
        yield session, tmp_path / "audit.jsonl"
    finally:
        await session.close()
        await cluster.stop()


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_watch_stages_and_levels(audited: tuple[Any, Path]) -> None:
    session, log = audited
    async with session.get("/api/v1/namespaces/default/pods",
                           params={"watch": "true", "timeoutSeconds": "1"}) as r:
        assert r.status == 200
        await r.read()
    async with session.post("/api/v1/namespaces/default/configmaps",
                            json={"metadata": {"name": "c"}, "data": {"k": "v"}}) as r:
        assert r.status == 201
    async with session.get("/healthz") as r:
        assert r.status == 200
    events = read_log(log)
    watch = [e for e in events if e["verb"] == "watch"]
    assert [e["stage"] for e in watch] == ["RequestReceived", "ResponseStarted",
                                          "ResponseComplete"]
    assert len({e["auditID"] for e in watch}) == 1
    assert watch[1]["responseStatus"]["code"] == 200
    created = [e for e in events if e["verb"] == "create"]
    assert [e["stage"] for e in created] == ["ResponseComplete"]  # the rule's omitStages
    assert created[0]["requestObject"]["data"] == {"k": "v"}
    assert created[0]["responseObject"]["metadata"]["name"] == "c"
    assert created[0]["objectRef"]["name"] == "c"
    assert not [e for e in events if e["requestURI"].startswith("/healthz")]
