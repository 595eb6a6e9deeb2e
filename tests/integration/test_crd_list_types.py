"""Server-side apply of custom resources by their schema's list and map types
(`x-kubernetes-list-type` atomic/set/map with `x-kubernetes-list-map-keys`,
`x-kubernetes-map-type`), with the real kubectl as the appliers: two managers own
different items of one list, and a merge patch takes over the items it changes."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.integration.conftest import Api, run_kubectl
from tests.integration.test_custom_resources import create_crd

GROUP = "lists.example.com"
PATH = f"/apis/{GROUP}/v1/namespaces/default/routes/r"


def route_crd() -> dict[str, Any]:
    spec = {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "required": ["name"], "properties": {
                      "name": {"type": "string"}, "port": {"type": "integer"}}}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                 "items": {"type": "string"}},
        "hosts": {"type": "array", "x-kubernetes-list-type": "atomic",
                  "items": {"type": "string"}},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                     "additionalProperties": {"type": "string"}},
    }}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"routes.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "routes", "kind": "Route"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "properties": {"spec": spec}}}}]},
    }


def route(**spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": f"{GROUP}/v1", "kind": "Route",
                           "metadata": {"name": "r"}, "spec": spec})


async def apply(api: Api, manager: str, manifest: str) -> tuple[int, str, str]:
    return await run_kubectl(api.server.write_kubeconfig(), "apply", "--server-side",
                             f"--field-manager={manager}", "-f", "-",
                             stdin=manifest.encode())


def owned(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == manager)
    return entry["fieldsV1"]["f:spec"]


async def test_two_managers_own_items_of_one_list(api: Api) -> None:
    await create_crd(api, route_crd())
    rc, _, err = await apply(api, "alice", route(
        ports=[{"name": "http", "port": 80}], tags=["a"], selector={"app": "web"},
        hosts=["one.example"]))
    assert rc == 0, err
    rc, _, err = await apply(api, "bob", route(ports=[{"name": "metrics", "port": 9090}],
                                               tags=["b"]))
    assert rc == 0, err
    _, obj = await api.request("GET", PATH)
    # merged by key and by value, not replaced
    assert obj["spec"]["ports"] == [{"name": "http", "port": 80},
                                    {"name": "metrics", "port": 9090}]
    assert sorted(obj["spec"]["tags"]) == ["a", "b"]
    assert 'k:{"name":"metrics"}' in owned(obj, "bob")["f:ports"]
    assert 'k:{"name":"http"}' not in owned(obj, "bob")["f:ports"]
    assert 'v:"b"' in owned(obj, "bob")["f:tags"]

    # alice stops applying her port: only hers goes
    rc, _, err = await apply(api, "alice", route(tags=["a"], selector={"app": "web"},
                                                 hosts=["one.example"]))
    assert rc == 0, err
    _, obj = await api.request("GET", PATH)
    assert obj["spec"]["ports"] == [{"name": "metrics", "port": 9090}]

    # an atomic map and an atomic list belong to one manager as a whole
    rc, _, err = await apply(api, "bob", route(ports=[{"name": "metrics", "port": 9090}],
                                               tags=["b"], selector={"team": "b"}))
    assert rc != 0
    assert 'conflict with "alice"' in err and ".spec.selector" in err, err
    rc, _, err = await apply(api, "bob", route(ports=[{"name": "metrics", "port": 9090}],
                                               tags=["b"], hosts=["two.example"]))
    assert rc != 0 and ".spec.hosts" in err, err


async def test_a_merge_patch_takes_over_the_items_it_changes(api: Api) -> None:
    await create_crd(api, route_crd())
    rc, _, err = await apply(api, "alice", route(ports=[{"name": "http", "port": 80},
                                                        {"name": "admin", "port": 81}]))
    assert rc == 0, err
    # a merge patch replaces the list (RFC 7386, as for any custom resource) ...
    rc, _, err = await run_kubectl(
        api.server.write_kubeconfig(), "patch", "route", "r", "--type=merge",
        "--field-manager=editor", "-p", json.dumps({"spec": {"ports": [
            {"name": "http", "port": 8080}, {"name": "admin", "port": 81}]}}))
    assert rc == 0, err
    _, obj = await api.request("GET", PATH)
    assert obj["spec"]["ports"] == [{"name": "http", "port": 8080},
                                    {"name": "admin", "port": 81}]
    # ... and its manager owns just the changed field of that item
    assert owned(obj, "editor") == {"f:ports": {'k:{"name":"http"}': {"f:port": {}}}}
    rc, _, err = await apply(api, "alice", route(ports=[{"name": "http", "port": 80},
                                                        {"name": "admin", "port": 81}]))
    assert rc != 0
    assert 'conflict with "editor"' in err and '.spec.ports[name="http"].port' in err, err
