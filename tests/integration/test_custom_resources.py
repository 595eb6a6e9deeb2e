"""CustomResourceDefinitions served as Kubernetes serves them, judged by the real kubectl
and by HTTP requests to a real API server (issue 11, done-when 1, 2 and 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import Api, eventually, run_kubectl, running_api

GROUP = "stable.example.com"
WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/widgets"


def widget_crd(*, versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [{
                    "rule": "self.replicas <= 2 * self.size", "fieldPath": ".replicas",
                    "messageExpression": "'at most ' + string(2 * self.size) + ' replicas'"}],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10,
                             "description": "How many parts the widget has."},
                    "color": {"type": "string", "default": "blue", "maxLength": 8,
                              "enum": ["blue", "red", "green", "ultraviolet"]},
                    "replicas": {"type": "integer", "default": 1},
                    "labels": {"type": "object",
                               "additionalProperties": {"type": "string"}},
                    "anything": {"type": "object",
                                 "x-kubernetes-preserve-unknown-fields": True},
                    "port": {"x-kubernetes-int-or-string": True},
                },
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"},
                               "phase": {"type": "string"}},
            },
        },
    }
    v1 = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}, "scale": {
            "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wd"], "categories": ["all"]},
            "versions": versions or [v1],
        },
    }


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": spec}


async def create_crd(api: Api, crd: dict[str, Any]) -> None:
    code, body = await api.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert code == 201, body

    async def established() -> bool:
        _, got = await api.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
            f"{crd['metadata']['name']}")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (got.get("status") or {}).get("conditions") or [])
    await eventually(established)


async def kubectl(api: Api, *args: str, stdin: bytes | None = None) -> str:
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), *args, stdin=stdin)
    assert rc == 0, err
    return out


async def test_crd_lifecycle_with_kubectl(api: Api, tmp_path: Path) -> None:
    await kubectl(api, "apply", "-f", "-", stdin=yaml.safe_dump(widget_crd()).encode())
    await kubectl(api, "wait", "--for=condition=established", "--timeout=10s",
                  f"crd/widgets.{GROUP}")
    resources = await kubectl(api, "api-resources", "--api-group", GROUP)
    assert "widgets" in resources and "wd" in resources and "Widget" in resources

    await kubectl(api, "apply", "-f", "-",
                  stdin=yaml.safe_dump(widget("w1", size=3)).encode())
    got = json.loads(await kubectl(api, "get", "widget", "w1", "-o", "json"))
    assert got["spec"] == {"size": 3, "color": "blue", "replicas": 1}  # defaults filled
    assert got["metadata"]["generation"] == 1

    # a second client-side apply patches (a merge patch: kubectl knows CRs have no
    # strategic merge) and keeps what it does not name
    await kubectl(api, "apply", "-f", "-",
                  stdin=yaml.safe_dump(widget("w1", size=3, color="red")).encode())
    got = json.loads(await kubectl(api, "get", "widget", "w1", "-o", "json"))
    assert got["spec"] == {"size": 3, "color": "red", "replicas": 1}

    table = await kubectl(api, "get", "wd")
    assert table.split("\n")[0].split() == ["NAME", "SIZE", "COLOR"]
    assert table.split("\n")[1].split() == ["w1", "3", "red"]
    wide = await kubectl(api, "get", "wd", "-o", "wide")
    assert wide.split("\n")[0].split() == ["NAME", "SIZE", "COLOR", "PHASE"]
    assert "w1" in await kubectl(api, "get", "all")

    # a violating object: 422 naming every bad field
    rc, _, err = await run_kubectl(
        api.server.write_kubeconfig(), "apply", "-f", "-",
        stdin=yaml.safe_dump(widget("bad", size=0, color="ultraviolet")).encode())
    assert rc != 0
    assert "spec.size" in err and "spec.color" in err, err

    await kubectl(api, "scale", "widget/w1", "--replicas=4")
    got = json.loads(await kubectl(api, "get", "widget", "w1", "-o", "json"))
    assert got["spec"]["replicas"] == 4
    assert got["metadata"]["generation"] == 3

    await kubectl(api, "patch", "widget", "w1", "--type=merge", "-p",
                  '{"spec": {"size": 5}}')
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "patch", "widget", "w1",
                                   "-p", '{"spec": {"size": 6}}')  # strategic by default
    assert rc != 0 and "unknown format" in err, err

    explain = await kubectl(api, "explain", "widget.spec.size")
    assert "How many parts the widget has." in explain

    await kubectl(api, "delete", "crd", f"widgets.{GROUP}")
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "get", "widgets.v1." + GROUP)
    assert rc != 0
    code, _ = await api.request("GET", WIDGETS)
    assert code == 404


async def test_schema_errors_status_and_pruning(api: Api) -> None:
    await create_crd(api, widget_crd())
    code, body = await api.request("POST", WIDGETS, json=widget(
        "bad", size="three", color="purple", labels={"a": 1}))
    assert code == 422, body
    fields = sorted(c["field"] for c in body["details"]["causes"])
    # the rule is not run on a body of the wrong types, and the 422 says so
    assert fields == ["<nil>", "spec.color", "spec.labels.a", "spec.size"], body

    code, body = await api.request("POST", WIDGETS, json=widget("cel", size=2, replicas=5))
    assert code == 422, body
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [
        ("spec.replicas", 'Invalid value: "object": at most 4 replicas')]

    code, body = await api.request("POST", WIDGETS, json={
        **widget("w", size=2, extra=1, anything={"x": {"y": 1}}), "status": {"phase": "X"}})
    assert code == 201, body
    assert "extra" not in body["spec"] and body["spec"]["anything"] == {"x": {"y": 1}}
    assert "status" not in body  # status is written through /status

    code, body = await api.request("POST", WIDGETS + "?fieldValidation=Strict",
                                   json=widget("s", size=2, extra=1))
    assert code == 400 and 'unknown field "spec.extra"' in body["message"], body

    body["spec"] = {"size": 9}
    code, got = await api.request("PUT", WIDGETS + "/w/status", json={
        **(await api.request("GET", WIDGETS + "/w"))[1], "status": {"phase": "Ready"},
        "spec": {"size": 9}})
    assert code == 200, got
    assert got["status"] == {"phase": "Ready"} and got["spec"]["size"] == 2
    assert got["metadata"]["generation"] == 1

    code, got = await api.request(
        "PATCH", WIDGETS + "/w", json={"spec": {"size": 7}, "status": {"phase": "No"}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200 and got["spec"]["size"] == 7 and got["status"] == {"phase": "Ready"}
    assert got["metadata"]["generation"] == 2


async def test_second_version_conversion_none(api: Api) -> None:
    crd = widget_crd()
    v1 = crd["spec"]["versions"][0]
    v2 = {**v1, "name": "v2", "storage": False, "deprecated": False}
    v1b = {**v1, "deprecated": True, "deprecationWarning": "v1 is old; use v2"}
    crd["spec"]["versions"] = [v1b, v2]
    await create_crd(api, crd)
    code, _ = await api.request("POST", WIDGETS, json=widget("w", size=1))
    assert code == 201
    code, got = await api.request("GET", f"/apis/{GROUP}/v2/namespaces/default/widgets/w")
    assert code == 200 and got["apiVersion"] == f"{GROUP}/v2", got
    code, got = await api.request("POST", f"/apis/{GROUP}/v2/namespaces/default/widgets",
                                  json={**widget("w2", size=2), "apiVersion": f"{GROUP}/v2"})
    assert code == 201, got
    code, got = await api.request("GET", WIDGETS + "/w2")
    assert got["apiVersion"] == f"{GROUP}/v1" and got["spec"]["size"] == 2
    async with api.session.get(api.url + WIDGETS, headers={
            "Authorization": f"Bearer {api.server.token}"}) as resp:
        assert "v1 is old; use v2" in resp.headers.get("Warning", "")
    _, disc = await api.request("GET", f"/apis/{GROUP}")
    assert disc["preferredVersion"]["version"] == "v2"


async def test_deleting_crd_deletes_objects(api: Api) -> None:
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
    await create_crd(api, widget_crd())
    for name in ("a", "b"):
        code, _ = await api.request("POST", WIDGETS, json=widget(name, size=1))
        assert code == 201
    held = widget("held", size=1)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    code, _ = await api.request("POST", WIDGETS, json=held)
    assert code == 201
    code, _ = await api.request("DELETE", crd_path)
    assert code == 200

    # the held object keeps the definition (and its API) while it is terminating
    async def terminating() -> bool:
        _, got = await api.request("GET", crd_path)
        _, left = await api.request("GET", WIDGETS)
        return any(c["type"] == "Terminating" and c["status"] == "True"
                   for c in got["status"]["conditions"]) and \
            [o["metadata"]["name"] for o in left["items"]] == ["held"]
    await eventually(terminating)
    code, body = await api.request("POST", WIDGETS, json=widget("late", size=1))
    assert code == 405 and "terminating" in body["message"], body
    code, _ = await api.request("PATCH", WIDGETS + "/held",
                                json={"metadata": {"finalizers": None}},
                                headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200

    async def gone() -> bool:
        code, _ = await api.request("GET", crd_path)
        return code == 404
    await eventually(gone)
    _, groups = await api.request("GET", "/apis")
    assert GROUP not in [g["name"] for g in groups["groups"]]
    # created again, the definition serves no leftovers
    await create_crd(api, widget_crd())
    _, listed = await api.request("GET", WIDGETS)
    assert listed["items"] == []


async def test_name_conflict_is_reported_not_served(api: Api) -> None:
    await create_crd(api, widget_crd())
    clash = widget_crd()
    clash["metadata"]["name"] = f"gizmos.{GROUP}"
    clash["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo", "shortNames": ["wd"]}
    code, body = await api.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=clash)
    assert code == 201, body

    async def judged() -> dict[str, Any] | None:
        _, got = await api.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.{GROUP}")
        conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        return conditions if "NamesAccepted" in conditions else None
    await eventually(judged)
    conditions = await judged()
    assert conditions is not None
    assert conditions["NamesAccepted"]["status"] == "False"
    assert conditions["NamesAccepted"]["reason"] == "NameConflict"
    assert conditions["Established"]["status"] == "False"
    code, _ = await api.request("GET", f"/apis/{GROUP}/v1/namespaces/default/gizmos")
    assert code == 404


async def test_bad_definition_is_refused_with_field_paths(api: Api) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "wrong"
    crd["spec"]["scope"] = "Everywhere"
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["size"]["type"] = "int"
    code, body = await api.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert code == 422, body
    assert sorted(c["field"] for c in body["details"]["causes"]) == [
        "metadata.name", "spec.scope",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type"]


async def test_cluster_scope_selectable_fields_and_restart(tmp_path: Path) -> None:
    crd = widget_crd()
    crd["spec"]["scope"] = "Cluster"
    crd["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.color"}]
    path = f"/apis/{GROUP}/v1/widgets"
    async with running_api(tmp_path / "data") as api:
        await create_crd(api, crd)
        for name, color in (("a", "red"), ("b", "green")):
            code, body = await api.request("POST", path, json=widget(name, size=1,
                                                                     color=color))
            assert code == 201, body
            assert "namespace" not in body["metadata"]
        _, listed = await api.request("GET", path + "?fieldSelector=spec.color%3Dgreen")
        assert [o["metadata"]["name"] for o in listed["items"]] == ["b"]
        code, body = await api.request("GET", path + "?fieldSelector=spec.size%3D1")
        assert code == 400, body
    # a restarted server serves its definitions before it answers
    async with running_api(tmp_path / "data") as api:
        code, listed = await api.request("GET", path)
        assert code == 200 and len(listed["items"]) == 2


def big_crd() -> dict[str, Any]:
    """A definition of over 1 MB, as monitoring operators ship them."""
    crd = widget_crd()
    crd["metadata"]["name"] = f"bigs.{GROUP}"
    crd["spec"]["names"] = {"plural": "bigs", "kind": "Big"}
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]
    for i in range(2500):
        props[f"field{i}"] = {
            "type": "object", "description": "A field with a long description. " * 5,
            "properties": {f"sub{j}": {"type": "string", "maxLength": 64,
                                       "description": "sub " * 10} for j in range(3)}}
    assert len(json.dumps(crd)) > 1_000_000
    return crd


async def test_a_megabyte_definition_applies_server_side(api: Api) -> None:
    await kubectl(api, "apply", "--server-side", "-f", "-",
                  stdin=json.dumps(big_crd()).encode())
    await kubectl(api, "wait", "--for=condition=established", "--timeout=20s",
                  f"crd/bigs.{GROUP}")
    code, body = await api.request("POST", f"/apis/{GROUP}/v1/namespaces/default/bigs", json={
        "apiVersion": f"{GROUP}/v1", "kind": "Big", "metadata": {"name": "b"},
        "spec": {"size": 1, "field7": {"sub1": "x" * 65}}})
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec.field7.sub1", body
    assert "sub sub" in await kubectl(api, "explain", "big.spec.field2499.sub2")


async def test_a_custom_kind_named_like_a_built_in_one_has_only_its_schema(api: Api) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = f"services.{GROUP}"
    crd["spec"]["names"] = {"plural": "services", "kind": "Service"}
    await create_crd(api, crd)
    code, body = await api.request(
        "POST", f"/apis/{GROUP}/v1/namespaces/default/services",
        json={"apiVersion": f"{GROUP}/v1", "kind": "Service", "metadata": {"name": "s.1"},
              "spec": {"size": 1}})
    assert code == 201, body  # no ports, a dotted name: fine for a custom Service
    code, body = await api.request(
        "POST", f"/apis/{GROUP}/v1/namespaces/default/services",
        json={"apiVersion": f"{GROUP}/v1", "kind": "Service", "metadata": {"name": "Bad_"},
              "spec": {"size": 1}})
    assert code == 422 and body["details"]["causes"][0]["field"] == "metadata.name", body


async def test_a_default_added_later_shows_on_read(api: Api) -> None:
    crd = widget_crd()
    await create_crd(api, crd)
    code, _ = await api.request("POST", WIDGETS, json=widget("old", size=1))
    assert code == 201
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
    code, body = await api.request("PATCH", crd_path, json=[{
        "op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/"
        "properties/shape", "value": {"type": "string", "default": "round"}}],
        headers={"Content-Type": "application/json-patch+json"})
    assert code == 200, body

    async def defaulted() -> bool:
        code, got = await api.request("GET", WIDGETS + "/old")
        return code == 200 and got["spec"].get("shape") == "round"
    await eventually(defaulted)


async def test_watch_as_table_has_the_printer_columns(api: Api) -> None:
    await create_crd(api, widget_crd())
    code, _ = await api.request("POST", WIDGETS, json=widget("w", size=3))
    assert code == 201
    async with api.session.get(
            api.url + WIDGETS + "?watch=true&timeoutSeconds=1",
            headers={"Authorization": f"Bearer {api.server.token}",
                     "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as resp:
        first = json.loads(await resp.content.readline())
    table = first["object"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Color",
                                                               "Phase"]
    assert table["rows"][0]["cells"] == ["w", 3, "blue", None]


async def test_embedded_resource_is_checked_as_an_object(api: Api) -> None:
    crd = widget_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["template"] = {"type": "object", "x-kubernetes-embedded-resource": True,
                                     "x-kubernetes-preserve-unknown-fields": True}
    await create_crd(api, crd)
    body = widget("emb", size=1, template={"metadata": {"name": "x/y"}, "data": {"a": "b"}})
    rc, _, err = await run_kubectl(api.server.write_kubeconfig(), "apply", "-f", "-",
                                   stdin=json.dumps(body).encode())
    assert rc != 0
    for field in ("spec.template.apiVersion: Required value",
                  "spec.template.kind: Required value", "spec.template.metadata.name"):
        assert field in err, err
    body["spec"]["template"] = {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "fine"}, "data": {"a": "b"}}
    code, made = await api.request("POST", WIDGETS, json=body)
    assert code == 201, made
    assert made["spec"]["template"]["data"] == {"a": "b"}
