"""RBAC is on by default: token users from tokens.csv can do only what bindings grant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Api, running_api

ALICE, BOB = "alice-token-123", "bob-token-456"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
async def rapi(tmp_path: Path) -> AsyncIterator[Api]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tokens.csv").write_text(f'{ALICE},alice,1001\n{BOB},bob,1002,"devs,qa"\n')
    async with running_api(data) as a:
        yield a


async def bind(api: Api, role: str, *, namespace: str | None = None, user: str = "alice",
               kind: str = "User", name: str = "") -> None:
    binding: dict[str, Any] = {
        "metadata": {"name": name or f"{user}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": user}]}
    path = f"{RBAC}/namespaces/{namespace}/rolebindings" if namespace \
        else f"{RBAC}/clusterrolebindings"
    status, body = await api.request("POST", path, json=binding)
    assert status == 201, body


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


async def test_unbound_user_is_forbidden_with_kubernetes_message(rapi: Api) -> None:
    status, body = await rapi.request("GET", "/api/v1/namespaces/default/pods", token=ALICE)
    assert status == 403
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == ('pods is forbidden: User "alice" cannot list resource "pods" '
                               'in API group "" in the namespace "default"')
    assert body["details"] == {"kind": "pods"}
    status, body = await rapi.request("GET", "/apis/apps/v1/deployments", token=ALICE)
    assert status == 403
    assert body["message"] == ('deployments.apps is forbidden: User "alice" cannot list '
                               'resource "deployments" in API group "apps" at the cluster scope')
    status, body = await rapi.request("GET", "/api/v1/namespaces/default/secrets/s1",
                                      token=ALICE)
    assert status == 403
    assert body["message"].startswith('secrets "s1" is forbidden: User "alice" cannot get')
    assert body["details"] == {"name": "s1", "kind": "secrets"}


async def test_unbound_user_reads_discovery_and_version(rapi: Api) -> None:
    for path in ("/version", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3",
                 "/healthz"):
        status, _ = await rapi.request("GET", path, token=ALICE)
        assert status == 200, path
    status, body = await rapi.request("GET", "/metrics", token=ALICE)
    assert status == 403
    assert body["message"] == 'forbidden: User "alice" cannot get path "/metrics"'


async def test_unauthenticated_health_and_version(rapi: Api) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        status, _ = await rapi.request("GET", path, token=None)
        assert status == 200, path
    status, _ = await rapi.request("GET", "/api", token=None)
    assert status == 401


async def test_view_rolebinding_is_namespaced_and_read_only(rapi: Api) -> None:
    await bind(rapi, "view", namespace="default")
    status, body = await rapi.request("GET", "/api/v1/namespaces/default/pods", token=ALICE)
    assert status == 200 and body["kind"] == "PodList"
    status, body = await rapi.request("GET", "/api/v1/namespaces/kube-system/pods",
                                      token=ALICE)
    assert status == 403 and 'in the namespace "kube-system"' in body["message"]
    status, body = await rapi.request("POST", "/api/v1/namespaces/default/pods",
                                      json=pod("p"), token=ALICE)
    assert status == 403
    assert body["message"] == ('pods is forbidden: User "alice" cannot create resource "pods" '
                               'in API group "" in the namespace "default"')
    # view does not include secrets
    status, _ = await rapi.request("GET", "/api/v1/namespaces/default/secrets", token=ALICE)
    assert status == 403


async def test_edit_clusterrolebinding_creates_deployments(rapi: Api) -> None:
    dep = {"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    path = "/apis/apps/v1/namespaces/default/deployments"
    status, _ = await rapi.request("POST", path, json=dep, token=ALICE)
    assert status == 403
    await bind(rapi, "edit")
    status, body = await rapi.request("POST", path, json=dep, token=ALICE)
    assert status == 201, body
    # edit grants no RBAC writes
    status, _ = await rapi.request("GET", f"{RBAC}/namespaces/default/rolebindings",
                                   token=ALICE)
    assert status == 403


async def test_group_binding_from_token_file(rapi: Api) -> None:
    await bind(rapi, "view", kind="Group", user="devs", name="devs-view")
    status, _ = await rapi.request("GET", "/api/v1/pods", token=BOB)
    assert status == 200
    status, _ = await rapi.request("GET", "/api/v1/pods", token=ALICE)
    assert status == 403


async def test_watch_and_subresources_map_to_verbs(rapi: Api) -> None:
    status, _ = await rapi.request("POST", "/api/v1/namespaces/default/pods", json=pod("p1"))
    assert status == 201
    role = {"metadata": {"name": "lister"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]}]}
    status, _ = await rapi.request("POST", f"{RBAC}/namespaces/default/roles", json=role)
    assert status == 201
    binding = {"metadata": {"name": "alice-lister"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "lister"},
               "subjects": [{"kind": "User", "name": "alice",
                             "apiGroup": "rbac.authorization.k8s.io"}]}
    status, _ = await rapi.request("POST", f"{RBAC}/namespaces/default/rolebindings",
                                   json=binding)
    assert status == 201
    base = "/api/v1/namespaces/default/pods"
    assert (await rapi.request("GET", base, token=ALICE))[0] == 200
    status, body = await rapi.request("GET", base + "?watch=true", token=ALICE)
    assert status == 403 and 'cannot watch resource "pods"' in body["message"]
    assert (await rapi.request("GET", base + "/p1/status", token=ALICE))[0] == 200
    status, body = await rapi.request("GET", base + "/p1", token=ALICE)
    assert status == 403 and 'cannot get resource "pods"' in body["message"]
    status, body = await rapi.request("GET", base + "/p1/log", token=ALICE)
    assert status == 403 and 'cannot get resource "pods/log"' in body["message"]
    status, body = await rapi.request("DELETE", base, token=ALICE)
    assert status == 403 and 'cannot deletecollection resource "pods"' in body["message"]


async def test_resource_names_restrict(rapi: Api) -> None:
    for name in ("allowed", "other"):
        status, _ = await rapi.request("POST", "/api/v1/namespaces/default/configmaps",
                                       json={"metadata": {"name": name}})
        assert status == 201
    role = {"metadata": {"name": "one-cm"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"],
         "verbs": ["get", "list", "watch"]}]}
    assert (await rapi.request("POST", f"{RBAC}/clusterroles", json=role))[0] == 201
    await bind(rapi, "one-cm", namespace="default")
    base = "/api/v1/namespaces/default/configmaps"
    assert (await rapi.request("GET", base + "/allowed", token=ALICE))[0] == 200
    assert (await rapi.request("GET", base + "/other", token=ALICE))[0] == 403
    assert (await rapi.request("GET", base, token=ALICE))[0] == 403
    # a list narrowed to the name by a field selector is checked against resourceNames
    status, body = await rapi.request(
        "GET", base + "?fieldSelector=metadata.name%3Dallowed", token=ALICE)
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == ["allowed"]


async def test_admin_can_do_anything(rapi: Api) -> None:
    assert (await rapi.request("GET", "/api/v1/namespaces/kube-system/secrets"))[0] == 200
    assert (await rapi.request("GET", "/metrics"))[0] == 404


async def test_missing_role_is_the_reason(rapi: Api) -> None:
    await bind(rapi, "no-such-role", namespace="default")
    status, body = await rapi.request("GET", "/api/v1/namespaces/default/pods", token=ALICE)
    assert status == 403
    assert body["message"].endswith(
        ': RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found')


async def test_bootstrap_policy_exists_and_edits_survive_restart(rapi: Api) -> None:
    status, body = await rapi.request("GET", f"{RBAC}/clusterroles?labelSelector="
                                      "kubernetes.io%2Fbootstrapping%3Drbac-defaults")
    names = {i["metadata"]["name"] for i in body["items"]}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery",
            "system:public-info-viewer", "system:basic-user"} <= names
    status, body = await rapi.request("GET", f"{RBAC}/clusterrolebindings/cluster-admin")
    assert body["subjects"][0]["name"] == "system:masters"
    # grant view secrets by editing the default role; a restart keeps the edit
    status, _ = await rapi.request(
        "PATCH", f"{RBAC}/clusterroles/view", json=[{"op": "add", "path": "/rules/-", "value": {
            "apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}}],
        headers={"Content-Type": "application/json-patch+json"})
    assert status == 200
    await rapi.server.stop()
    await rapi.server.start()
    await bind(rapi, "view", namespace="default")
    assert (await rapi.request("GET", "/api/v1/namespaces/default/secrets",
                               token=ALICE))[0] == 200


async def test_self_subject_access_review(rapi: Api) -> None:
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    async def can(attrs: dict[str, Any], key: str = "resourceAttributes") -> bool:
        status, body = await rapi.request("POST", path, token=ALICE, json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {key: attrs}})
        assert status == 201, body
        assert body["kind"] == "SelfSubjectAccessReview"
        return body["status"]["allowed"]

    pods = {"namespace": "default", "verb": "list", "resource": "pods"}
    assert not await can(pods)
    assert await can({"path": "/version", "verb": "get"}, "nonResourceAttributes")
    await bind(rapi, "view", namespace="default")
    assert await can(pods)
    assert not await can({**pods, "verb": "create"})
    status, body = await rapi.request("POST", path, token=ALICE, json={"spec": {}})
    assert status == 422
    status, body = await rapi.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=BOB,
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert status == 201
    assert body["status"]["userInfo"] == {"username": "bob", "uid": "1002",
                                          "groups": ["devs", "qa", "system:authenticated"]}


async def test_no_escalation_through_roles_or_bindings(rapi: Api) -> None:
    """A namespace admin manages RBAC in its namespace but cannot grant more than it holds
    (Kubernetes' escalation prevention)."""
    status, _ = await rapi.request("POST", "/api/v1/namespaces",
                                   json={"metadata": {"name": "team"}})
    assert status == 201
    await bind(rapi, "admin", namespace="team")
    rb = f"{RBAC}/namespaces/team/rolebindings"
    role = {"metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    status, body = await rapi.request("POST", f"{RBAC}/namespaces/team/roles", json=role,
                                      token=ALICE)
    assert status == 201, body  # held through admin: allowed
    nodes = {"metadata": {"name": "node-reader"},
             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}
    status, body = await rapi.request("POST", f"{RBAC}/namespaces/team/roles", json=nodes,
                                      token=ALICE)
    assert status == 403, body
    assert body["message"] == (
        'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "alice" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}')

    def binding(name: str, role_kind: str, role_name: str) -> dict[str, Any]:
        return {"metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                            "name": role_name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": "bob"}]}
    status, body = await rapi.request("POST", rb, json=binding("bob-view", "ClusterRole",
                                                               "view"), token=ALICE)
    assert status == 201, body  # view is within admin
    status, body = await rapi.request("POST", rb, json=binding("bob-root", "ClusterRole",
                                                               "cluster-admin"), token=ALICE)
    assert status == 403, body
    assert "attempting to grant RBAC permissions not currently held" in body["message"]
    status, body = await rapi.request("POST", rb, json=binding("bob-x", "Role", "missing"),
                                      token=ALICE)
    assert status == 403 and 'role.rbac.authorization.k8s.io "missing" not found' in \
        body["message"]
    # the cluster admin may grant anything
    status, body = await rapi.request("POST", rb, json=binding("bob-root", "ClusterRole",
                                                               "cluster-admin"))
    assert status == 201, body
