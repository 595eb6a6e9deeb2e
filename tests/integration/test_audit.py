"""The audit log of a real API server: a policy's rules decide each request's level, and
the stages are written as Kubernetes writes them (a watch: RequestReceived,
ResponseStarted once its headers are out, ResponseComplete when it ends)."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import yaml

from pinnace.api.errors import ApiError
from pinnace.apiserver import component_policy
from pinnace.apiserver.audit import Policy
from pinnace.apiserver.auth import User
from pinnace.apiserver.rbac import request_attributes
from pinnace.cluster import Cluster, ClusterConfig
from tests.integration.conftest import eventually, run_kubectl

RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
        {"level": "RequestResponse", "users": [RS_CONTROLLER], "verbs": ["create"]},
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


class Audited(NamedTuple):
    session: aiohttp.ClientSession  # the admin's, over HTTPS
    log: Path
    cluster: Cluster


@contextlib.asynccontextmanager
async def audited_cluster(tmp_path: Path, policy_file: Path, **config: Any
                          ) -> AsyncIterator[Audited]:
    cluster = Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0,
                                    audit_policy_file=policy_file,
                                    audit_log_path=tmp_path / "audit.jsonl", **config))
    await cluster.start()
    ctx = ssl.create_default_context(cadata=cluster.server.ca_pem.decode())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), base_url=cluster.server.url,
        headers={"Authorization": f"Bearer {cluster.server.token}"})
    try:
        yield Audited(session, tmp_path / "audit.jsonl", cluster)
    finally:
        await session.close()
        await cluster.stop()


@pytest.fixture
async def audited(tmp_path: Path, policy_file: Path) -> AsyncIterator[Audited]:
    async with audited_cluster(tmp_path, policy_file, controllers=False,
                               scheduler=False) as a:
        yield a


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_watch_stages_and_levels(audited: Audited) -> None:
    session, log, _ = audited
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


async def test_a_refused_token_is_logged_as_kube_apiserver_logs_it(audited: Audited) -> None:
    session, log, _ = audited
    path = "/api/v1/namespaces/default/pods"
    async with session.get(path, headers={"Authorization": "Bearer not-a-known-token",
                                          "User-Agent": "intruder/1.0"}) as r:
        assert r.status == 401
    async with session.get(path, headers={"Authorization": ""}) as r:
        assert r.status == 401
    refused = [e for e in read_log(log) if e.get("responseStatus", {}).get("code") == 401]
    # one Event each, at ResponseStarted (the request never reached the audit filter)
    assert [e["stage"] for e in refused] == ["ResponseStarted", "ResponseStarted"]
    bearer, none = refused
    assert bearer["user"] == {} and bearer["verb"] == "list"
    assert bearer["responseStatus"]["message"] == "Authentication failed, attempted: bearer"
    assert bearer["objectRef"] == {"resource": "pods", "namespace": "default",
                                   "apiVersion": "v1"}
    assert bearer["userAgent"] == "intruder/1.0" and bearer["sourceIPs"] == ["127.0.0.1"]
    assert none["responseStatus"]["message"] == \
        "Authentication failed, no credentials provided"


async def test_kubectl_as_logs_the_caller_and_the_impersonated_user(
        audited: Audited, tmp_path: Path) -> None:
    _, log, cluster = audited
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.server.kubeconfig())
    code, _, err = await run_kubectl(kubeconfig, "--as=alice", "--as-group=dev", "get",
                                     "pods", "-n", "team")
    assert code != 0 and "forbidden" in err
    [ev] = [e for e in read_log(log) if e["stage"] == "ResponseComplete"
            and e["requestURI"].startswith("/api/v1/namespaces/team/pods")]
    # the policy decided on the caller, who is `user`; the request ran as alice
    assert ev["user"]["username"] == "system:admin"
    assert ev["impersonatedUser"] == {"username": "alice",
                                      "groups": ["dev", "system:authenticated"]}
    assert ev["responseStatus"]["code"] == 403
    assert ev["responseStatus"]["reason"] == "Forbidden"
    assert ev["userAgent"].startswith("kubectl/")


async def test_components_in_process_are_logged_as_themselves(
        tmp_path: Path, policy_file: Path) -> None:
    async with audited_cluster(tmp_path, policy_file, scheduler=False,
                               fake_nodes=1) as (_, log, cluster):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(cluster.server.kubeconfig())
        code, _, err = await run_kubectl(kubeconfig, "create", "deployment", "web",
                                         "--image=nginx", "--replicas=2")
        assert code == 0, err

        def pod_creates() -> list[dict[str, Any]]:
            return [e for e in read_log(log) if e["verb"] == "create"
                    and e.get("objectRef", {}).get("resource") == "pods"
                    and e["stage"] == "ResponseComplete"]
        await eventually(lambda: len(pod_creates()) == 2)
        # a component refused by RBAC is logged too: audit comes before authorization
        scheduler = cluster.client_as(component_policy.SCHEDULER)
        with pytest.raises(ApiError):
            await scheduler.get(scheduler.resource("v1", "Secret"), "x", "default")
        # the cluster's trusted client is kube-apiserver's own loopback user
        trusted = cluster.client
        await trusted.create(trusted.resource("v1", "Namespace"), {"metadata": {"name": "t"}})
        events = read_log(log)

    # the controller's write, as the controller, with its bodies (the policy's rule for it)
    ev = pod_creates()[0]
    assert ev["user"] == {"username": RS_CONTROLLER, "groups": [
        "system:serviceaccounts", "system:serviceaccounts:kube-system",
        "system:authenticated"]}
    assert ev["level"] == "RequestResponse" and ev["responseStatus"]["code"] == 201
    assert ev["objectRef"]["namespace"] == "default" and ev["objectRef"]["apiVersion"] == "v1"
    assert ev["sourceIPs"] == ["127.0.0.1"]
    assert ev["userAgent"].startswith("kube-controller-manager/")
    assert ev["userAgent"].endswith("/replicaset-controller")
    assert ev["requestURI"] == "/api/v1/namespaces/default/pods?fieldManager=pinnace"
    [owner] = ev["requestObject"]["metadata"]["ownerReferences"]
    assert owner["kind"] == "ReplicaSet" and owner["name"].startswith("web-")
    assert ev["responseObject"]["metadata"]["uid"]
    stages = [e["stage"] for e in events if e["auditID"] == ev["auditID"]]
    assert stages == ["RequestReceived", "ResponseComplete"]
    # the deployment controller's ReplicaSet, at the catch-all rule's Metadata level
    [rs] = [e for e in events if e["verb"] == "create" and e["stage"] == "ResponseComplete"
            and e.get("objectRef", {}).get("resource") == "replicasets"]
    assert rs["user"]["username"] == \
        "system:serviceaccount:kube-system:deployment-controller"
    assert rs["level"] == "Metadata" and "requestObject" not in rs
    # kubectl's own request beside them, as before
    [mine] = [e for e in events if e["verb"] == "create" and e["stage"] == "ResponseComplete"
              and e.get("objectRef", {}).get("resource") == "deployments"]
    assert mine["user"]["username"] == "system:admin"
    assert mine["userAgent"].startswith("kubectl/")
    # the shared informers' watches: received, started, as a remote watch is
    watches = [e for e in events if e["verb"] == "watch"
               and e["user"]["username"] == "system:kube-controller-manager"
               and e["objectRef"]["resource"] == "pods"]
    assert [e["stage"] for e in watches[:2]] == ["RequestReceived", "ResponseStarted"]
    # the scheduler refused
    [refused] = [e for e in events if e["user"].get("username") == "system:kube-scheduler"
                 and e.get("objectRef", {}).get("resource") == "secrets"
                 and e["stage"] == "ResponseComplete"]
    assert refused["responseStatus"]["code"] == 403
    assert refused["responseStatus"]["reason"] == "Forbidden"
    assert refused["userAgent"].startswith("kube-scheduler/")
    [own] = [e for e in events if e["stage"] == "ResponseComplete" and e["verb"] == "create"
             and e.get("objectRef", {}).get("resource") == "namespaces"]
    assert own["user"] == {"username": "system:apiserver",
                           "groups": ["system:masters", "system:authenticated"]}
    assert own["userAgent"].startswith("kube-apiserver/") and own["objectRef"]["name"] == "t"
    # a node's agent, as its node
    node = [e for e in events if e["user"].get("username", "").startswith("system:node:")]
    assert all(e["userAgent"].startswith("kubelet/") and
               "system:nodes" in e["user"]["groups"] for e in node)
    assert {(e["verb"], e["objectRef"]["resource"], e["responseStatus"]["code"])
            for e in node if e["stage"] == "ResponseComplete"} >= {("create", "nodes", 201)}


async def test_no_policy_no_log_from_components(tmp_path: Path) -> None:
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0,
                                     scheduler=False)) as cluster:
        assert cluster.server.registry is not None
        assert cluster.server.registry.audit_log is None
        c = cluster.client
        await c.create(c.resource("v1", "ConfigMap"), {"metadata": {"name": "c"}}, "default")
    assert not (tmp_path / "data" / "audit.log").exists()
