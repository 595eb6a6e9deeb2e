"""The real kubectl against discovery, OpenAPI v3 and the PKI, served by a tiny HTTPS app.

The app below is only a harness for the documents (the project's HTTP layer lives
elsewhere): it routes /version, /api, /apis, the group-versions and /openapi/v3 to
the pure functions, checks the bearer token and answers 404 on /openapi/v2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pinnace.apiserver import discovery, openapi, pki
from tests.ports import free_port

KUBECTL = "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed")


def _json(body: object, content_type: str = "application/json") -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type=None,
                        headers={"Content-Type": content_type})


def _app(token: str, *, aggregated: bool, seen: list[str],
         pods: dict[str, dict]) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        seen.append(request.path_qs)
        if request.headers.get("Authorization") != f"Bearer {token}":
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Failure", "message": "Unauthorized",
                      "reason": "Unauthorized", "code": 401}
            return web.json_response(status, status=401)
        return await handler(request)

    def wants_aggregated(request: web.Request) -> bool:
        return aggregated and "as=APIGroupDiscoveryList" in request.headers.get("Accept", "")

    async def version(request: web.Request) -> web.Response:
        return _json(discovery.version_info())

    async def api(request: web.Request) -> web.Response:
        if wants_aggregated(request):
            return _json(discovery.aggregated_discovery(True), discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_versions(f"127.0.0.1:{request.url.port}"))

    async def apis(request: web.Request) -> web.Response:
        if wants_aggregated(request):
            return _json(discovery.aggregated_discovery(False),
                         discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_group_list())

    async def group(request: web.Request) -> web.Response:
        body = discovery.api_group(request.match_info["group"])
        return _json(body) if body else web.Response(status=404)

    async def resources(request: web.Request) -> web.Response:
        body = discovery.api_resource_list(request.match_info.get("group", ""),
                                           request.match_info["version"])
        return _json(body) if body else web.Response(status=404)

    async def openapi_index(request: web.Request) -> web.Response:
        return _json(openapi.openapi_v3_index())

    async def openapi_doc(request: web.Request) -> web.Response:
        data = openapi.openapi_v3_document(request.match_info["path"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/json")

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def get_pod(request: web.Request) -> web.Response:
        pod = pods.get(request.match_info["name"])
        return web.json_response(pod) if pod else web.Response(status=404)

    async def patch_pod(request: web.Request) -> web.Response:
        # Records the patch kubectl computed; the object itself is left as it was.
        pods["patches"] = {"content-type": request.content_type,
                           "query": dict(request.query), "body": await request.json()}
        return web.json_response(pods[request.match_info["name"]])

    app = web.Application(middlewares=[auth])
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/{version}", resources)
    app.router.add_get("/apis/{group}", group)
    app.router.add_get("/apis/{group}/{version}", resources)
    app.router.add_get("/openapi/v3", openapi_index)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_doc)
    app.router.add_get("/openapi/v2", not_found)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", get_pod)
    app.router.add_patch("/api/v1/namespaces/{ns}/pods/{name}", patch_pod)
    return app


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, aggregated: bool = True, seen: list[str] | None = None,
                  pods: dict[str, dict] | None = None) -> AsyncIterator[Path]:
    """Serve the documents over HTTPS; yield the path of a kubeconfig for it."""
    bundle = pki.ensure_pki(tmp_path / "data")
    token = pki.ensure_admin_token(tmp_path / "data")
    runner = web.AppRunner(_app(token, aggregated=aggregated,
                                seen=seen if seen is not None else [],
                                pods=pods if pods is not None else {}))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=bundle.ssl_context())
    await site.start()
    config = tmp_path / "kubeconfig"
    config.write_text(pki.kubeconfig(f"https://127.0.0.1:{port}", bundle.ca_pem, token))
    try:
        yield config
    finally:
        await runner.cleanup()


async def kubectl(config: Path, *args: str) -> str:
    home = config.parent / "home"
    home.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(config), "--cache-dir", str(home / "cache"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    return out.decode()


def _rows(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines()[1:] if line.strip()}


@pytest.mark.parametrize("aggregated", [True, False], ids=["aggregated", "legacy"])
async def test_api_resources_lists_kinds_with_short_names(tmp_path: Path,
                                                          aggregated: bool) -> None:
    seen: list[str] = []
    async with serving(tmp_path, aggregated=aggregated, seen=seen) as config:
        rows = _rows(await kubectl(config, "api-resources"))
    assert rows["pods"][1] == "po"
    assert rows["deployments"][1:3] == ["deploy", "apps/v1"]
    assert rows["namespaces"][1:4] == ["ns", "v1", "false"]
    assert rows["clusterroles"][1:] == ["rbac.authorization.k8s.io/v1", "false", "ClusterRole"]
    assert "pods/status" not in rows  # subresources are not resources
    if aggregated:
        assert not any(p.startswith("/apis/apps/v1") for p in seen)
    else:
        assert any(p.startswith("/apis/apps/v1") for p in seen)


async def test_api_resources_filters_by_category(tmp_path: Path) -> None:
    async with serving(tmp_path) as config:
        names = (await kubectl(config, "api-resources", "--categories=all", "-o", "name"))
    assert set(names.split()) == {"pods", "services", "replicationcontrollers",
                                  "daemonsets.apps", "deployments.apps",
                                  "replicasets.apps", "statefulsets.apps", "cronjobs.batch",
                                  "jobs.batch"}


async def test_api_versions_lists_every_group_version(tmp_path: Path) -> None:
    async with serving(tmp_path) as config:
        versions = (await kubectl(config, "api-versions")).split()
    assert {"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1",
            "storage.k8s.io/v1", "coordination.k8s.io/v1"} <= set(versions)


async def test_explain_reads_field_docs_from_openapi_v3(tmp_path: Path) -> None:
    seen: list[str] = []
    async with serving(tmp_path, seen=seen) as config:
        volumes = await kubectl(config, "explain", "pod.spec.volumes")
        strategy = await kubectl(config, "explain", "deployment.spec.strategy", "--recursive")
    assert "KIND:       Pod" in volumes
    assert "FIELD: volumes <[]Volume>" in volumes
    assert "configMap\t<ConfigMapVolumeSource>" in volumes
    assert "KIND:       Deployment" in strategy
    assert "GROUP:      apps" in strategy
    assert "rollingUpdate\t<RollingUpdateDeployment>" in strategy
    assert "maxSurge\t<IntOrString>" in strategy
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in seen)


async def test_kubectl_rejects_a_wrong_token(tmp_path: Path) -> None:
    async with serving(tmp_path) as config:
        text = config.read_text().replace("token: ", "token: wrong")
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "c"),
            "api-versions", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"Unauthorized" in err or b"credentials" in err



def _pod(images: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": n, "image": i} for n, i in images.items()]}}


async def test_apply_computes_a_strategic_merge_patch_from_v3_schemas(tmp_path: Path) -> None:
    old = _pod({"app": "nginx:1", "sidecar": "busybox:1"})
    live = json.loads(json.dumps(old))
    live["metadata"]["uid"] = "0b7c2a9e-1111-2222-3333-444455556666"
    live["metadata"]["resourceVersion"] = "7"
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(old)}
    pods = {"web": live}
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod({"app": "nginx:2", "sidecar": "busybox:1"})))
    async with serving(tmp_path, pods=pods) as config:
        await kubectl(config, "apply", "-f", str(manifest))
    patch = pods["patches"]
    assert patch["content-type"] == "application/strategic-merge-patch+json"
    assert patch["query"].get("fieldValidation") == "Strict"
    spec = patch["body"]["spec"]
    # Only a merge key from the schema lets kubectl address containers by name.
    assert spec["$setElementOrder/containers"] == [{"name": "app"}, {"name": "sidecar"}]
    assert spec["containers"] == [{"image": "nginx:2", "name": "app"}]
