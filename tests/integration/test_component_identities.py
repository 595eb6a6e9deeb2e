"""The cluster's own components act as their own users: the scheduler, each controller,
each node (Node authorizer + NodeRestriction), with RBAC applied on the in-process
transport as over HTTPS (issue 12, Done-when 3)."""

from __future__ import annotations

import logging
import secrets
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinnace.api.errors import ApiError
from pinnace.apiserver import component_policy
from pinnace.client.client import Client
from pinnace.client.transport import HttpTransport
from pinnace.cluster import Cluster, ClusterConfig
from tests.integration.conftest import eventually, gone, run_kubectl

REFUSED = "in-process request refused"


def _labels(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app": name}}


def _template(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_components_run_a_workload_as_themselves_without_a_refusal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pinnace.apiserver.local")
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0,
                                     fake_nodes=2)) as cluster:
        c = cluster.client
        ns = "work"
        await c.create(c.resource("v1", "Namespace"), {"metadata": {"name": ns}})
        await c.create(c.resource("apps/v1", "Deployment"), {
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": _labels("web"), "template": _template("web")}},
            ns)
        await c.create(c.resource("apps/v1", "DaemonSet"), {
            "metadata": {"name": "agent"},
            "spec": {"selector": _labels("agent"), "template": _template("agent")}}, ns)
        await c.create(c.resource("apps/v1", "StatefulSet"), {
            "metadata": {"name": "db"},
            "spec": {"replicas": 2, "serviceName": "db", "selector": _labels("db"),
                     "template": _template("db")}}, ns)
        await c.create(c.resource("batch/v1", "Job"), {
            "metadata": {"name": "once"},
            "spec": {"template": _template("once", restartPolicy="Never")}}, ns)
        await c.create(c.resource("v1", "Service"), {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}, ns)
        pods, slices = c.resource("v1", "Pod"), c.resource("discovery.k8s.io/v1",
                                                            "EndpointSlice")

        async def all_running() -> bool:
            items = (await c.list(pods, ns))["items"]
            by_app: dict[str, int] = {}
            for p in items:
                if (p.get("status") or {}).get("phase") == "Running" and \
                        p["spec"].get("nodeName", "").startswith("fake-"):
                    app = p["metadata"]["labels"]["app"]
                    by_app[app] = by_app.get(app, 0) + 1
            return by_app.get("web") == 2 and by_app.get("agent") == 2 and \
                by_app.get("db") == 2 and by_app.get("once", 0) >= 1

        await eventually(all_running, within=30)

        async def endpoints_ready() -> bool:
            items = (await c.list(slices, ns, label_selector="kubernetes.io/service-name=web")
                     )["items"]
            return sum(len(s.get("endpoints") or []) for s in items) == 2
        await eventually(endpoints_ready, within=15)
        # the Lease heartbeats and Node status of each fake node, written as the node
        leases = c.resource("coordination.k8s.io/v1", "Lease")

        async def heartbeats() -> bool:
            names = {le["spec"].get("holderIdentity") for le in
                     (await c.list(leases, "kube-node-lease"))["items"]}
            return {"fake-0", "fake-1"} <= names
        await eventually(heartbeats, within=15)

        # the namespace controller (and the garbage collector) empty it as themselves
        await c.delete(c.resource("v1", "Namespace"), ns)
        await eventually(lambda: gone(c, c.resource("v1", "Namespace"), ns), within=30)
    refusals = [r.getMessage() for r in caplog.records if REFUSED in r.getMessage()]
    assert refusals == []


def _secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": {"key": name}}


def _pod(name: str, node: str, secret: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "s", "secret": {"secretName": secret}}]}}


@pytest.fixture
async def cluster(tmp_path: Path) -> Any:
    """A control plane with no node agents, and a token for node `n1` in tokens.csv."""
    data = tmp_path / "data"
    data.mkdir()
    token = secrets.token_hex(16)
    (data / "tokens.csv").write_text(f'{token},system:node:n1,n1,"system:nodes"\n')
    async with Cluster(ClusterConfig(data_dir=data, port=0, controllers=False,
                                     scheduler=False)) as cl:
        cl.node_token = token  # type: ignore[attr-defined]
        c = cl.client
        for name in ("n1", "n2"):
            await c.create(c.resource("v1", "Node"), {"metadata": {"name": name}})
        for name in ("mine", "theirs", "unused"):
            await c.create(c.resource("v1", "Secret"), _secret(name), "default")
        await c.create(c.resource("v1", "Pod"), _pod("p1", "n1", "mine"), "default")
        await c.create(c.resource("v1", "Pod"), _pod("p2", "n2", "theirs"), "default")
        yield cl


async def _node_reads_only_its_pods_secrets(node: Client) -> None:
    secrets_rt = node.resource("v1", "Secret")
    mine = await node.get(secrets_rt, "mine", "default")
    assert mine["metadata"]["name"] == "mine"
    for other in ("theirs", "unused"):
        with pytest.raises(ApiError) as e:
            await node.get(secrets_rt, other, "default")
        assert e.value.code == 403
        assert e.value.message == (
            f'secrets "{other}" is forbidden: User "system:node:n1" cannot get resource '
            f'"secrets" in API group "" in the namespace "default": no relationship found '
            f"between node 'n1' and this object")
    with pytest.raises(ApiError) as e:  # and no listing them all
        await node.list(secrets_rt, "default")
    assert e.value.code == 403


async def _node_writes_only_its_own(node: Client) -> None:
    nodes, pods = node.resource("v1", "Node"), node.resource("v1", "Pod")
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    ok = await node.patch(nodes, "n1", ready, subresource="status")
    assert ok["status"]["conditions"][0]["status"] == "True"
    with pytest.raises(ApiError) as e:
        await node.patch(nodes, "n2", ready, subresource="status")
    assert e.value.code == 403
    assert e.value.message == \
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    with pytest.raises(ApiError) as e:
        await node.patch(nodes, "n1", {"metadata": {"labels": {
            "node-restriction.kubernetes.io/pool": "gold"}}})
    assert e.value.code == 403 and "node-restriction.kubernetes.io/pool" in e.value.message
    running = {"status": {"phase": "Running"}}
    await node.patch(pods, "p1", running, namespace="default", subresource="status")
    with pytest.raises(ApiError) as e:
        await node.patch(pods, "p2", running, namespace="default", subresource="status")
    assert e.value.code == 403 and e.value.message == (
        'pods "p2" is forbidden: node "n1" can only update pod status for pods with '
        "spec.nodeName set to itself")
    with pytest.raises(ApiError) as e:  # a node does not make ordinary pods
        await node.create(pods, _pod("p3", "n1", "mine"), "default")
    assert e.value.code == 403 and "can only create mirror pods" in e.value.message
    leases = node.resource("coordination.k8s.io/v1", "Lease")
    with pytest.raises(ApiError) as e:
        await node.create(leases, {"metadata": {"name": "n2"}, "spec": {}},
                          "kube-node-lease")
    assert e.value.code == 403
    await node.create(leases, {"metadata": {"name": "n1"}, "spec": {}}, "kube-node-lease")


async def test_a_node_in_process_reads_and_writes_only_its_own(cluster: Any) -> None:
    node = cluster.client_as(component_policy.node_user("n1"))  # what the agent uses
    await _node_reads_only_its_pods_secrets(node)
    await _node_writes_only_its_own(node)


async def test_a_node_over_https_with_a_token_is_held_to_the_same(cluster: Any) -> None:
    node = Client(HttpTransport(cluster.server.url, token=cluster.node_token,
                                ca_pem=cluster.server.ca_pem))
    try:
        await _node_reads_only_its_pods_secrets(node)
        await _node_writes_only_its_own(node)
    finally:
        await node.close()


async def test_kubectl_auth_can_i_as_the_components(cluster: Any, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.server.kubeconfig())
    cases = [
        # kubectl reads `pods/binding` as the pod named "binding"; the binding
        # subresource is `--subresource` (or the legacy `bindings` resource)
        (["--as=system:kube-scheduler", "create", "pods", "--subresource=binding"], "yes"),
        (["--as=system:kube-scheduler", "create", "bindings"], "yes"),
        (["--as=system:kube-scheduler", "create", "pods/binding"], "no"),
        (["--as=system:kube-scheduler", "delete", "deployments"], "no"),
        (["--as=system:serviceaccount:kube-system:replicaset-controller", "create", "pods"],
         "yes"),
        (["--as=system:serviceaccount:kube-system:replicaset-controller", "get", "secrets"],
         "no"),
        (["--as=system:kube-proxy", "list", "endpointslices.discovery.k8s.io"], "yes"),
        (["--as=system:node:n1", "--as-group=system:nodes", "get", "secret/mine"], "yes"),
        (["--as=system:node:n1", "--as-group=system:nodes", "get", "secret/theirs"],
         "no - no relationship found between node 'n1' and this object"),
    ]
    for args, want in cases:
        code, out, err = await run_kubectl(kubeconfig, "auth", "can-i", *args)
        assert out.strip() == want, (args, out, err)
        assert code == (0 if want == "yes" else 1), (args, code)


async def test_a_node_reaches_claims_volumes_and_config_of_its_pods_only(cluster: Any) -> None:
    c = cluster.client
    for name, claim in (("pv-mine", "claim-mine"), ("pv-theirs", "claim-theirs")):
        await c.create(c.resource("v1", "PersistentVolume"), {
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": f"/tmp/{name}"}, "storageClassName": ""}})
        await c.create(c.resource("v1", "PersistentVolumeClaim"), {
            "metadata": {"name": claim},
            "spec": {"volumeName": name, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}},
            "default")
    await c.create(c.resource("v1", "ConfigMap"), {"metadata": {"name": "settings"}},
                   "default")
    for pod, node_name, claim, config in (("q1", "n1", "claim-mine", "settings"),
                                          ("q2", "n2", "claim-theirs", "other")):
        env = [{"name": "S", "valueFrom": {"configMapKeyRef": {"name": config, "key": "k"}}}]
        await c.create(c.resource("v1", "Pod"), {
            "metadata": {"name": pod},
            "spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "image": "busybox", "env": env}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}},
            "default")
    node = cluster.client_as(component_policy.node_user("n1"))
    assert (await node.get(node.resource("v1", "ConfigMap"), "settings", "default"))
    assert (await node.get(node.resource("v1", "PersistentVolumeClaim"), "claim-mine",
                           "default"))
    assert (await node.get(node.resource("v1", "PersistentVolume"), "pv-mine"))
    for kind, name, ns in (("PersistentVolumeClaim", "claim-theirs", "default"),
                           ("PersistentVolume", "pv-theirs", None)):
        with pytest.raises(ApiError) as e:
            await node.get(node.resource("v1", kind), name, ns)
        assert e.value.code == 403 and "no relationship found" in e.value.message
    # a missing object its pod names is a 404, as the kubelet expects for optional ones
    await c.delete(c.resource("v1", "ConfigMap"), "settings", "default")
    with pytest.raises(ApiError) as e:
        await node.get(node.resource("v1", "ConfigMap"), "settings", "default")
    assert e.value.code == 404

    pods = node.resource("v1", "Pod")
    with pytest.raises(ApiError) as e:  # only its own pods go
        await node.delete(pods, "q2", "default")
    assert e.value.code == 403 and e.value.message == (
        'pods "q2" is forbidden: node "n1" can only delete pods with spec.nodeName set to '
        "itself")
    await node.delete(pods, "q1", "default")
    # a mirror pod of its own (a static pod's copy) it may create
    mirror = {"metadata": {"name": "static-n1", "annotations": {
        "kubernetes.io/config.mirror": "hash"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    await node.create(pods, mirror, "default")
    mirror["metadata"]["name"], mirror["spec"]["nodeName"] = "static-n2", "n2"
    with pytest.raises(ApiError) as e:
        await node.create(pods, mirror, "default")
    assert e.value.code == 403 and "spec.nodeName set to itself" in e.value.message


async def test_impersonation_needs_the_impersonate_verb(cluster: Any) -> None:
    ctx = ssl.create_default_context(cadata=cluster.server.ca_pem.decode())
    url = cluster.server.url + "/api/v1/namespaces/default/secrets/theirs"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        # a node may not become the admin …
        async with s.get(url, headers={"Authorization": f"Bearer {cluster.node_token}",
                                       "Impersonate-User": "system:admin"}) as r:
            assert r.status == 403
            assert (await r.json())["message"] == (
                'users "system:admin" is forbidden: User "system:node:n1" cannot impersonate '
                'resource "users" in API group "" at the cluster scope')
        # … and the admin impersonating the node is held to what the node may read
        admin = {"Authorization": f"Bearer {cluster.server.token}",
                 "Impersonate-User": "system:node:n1", "Impersonate-Group": "system:nodes"}
        async with s.get(url, headers=admin) as r:
            assert r.status == 403
        async with s.get(url.replace("theirs", "mine"), headers=admin) as r:
            assert r.status == 200
