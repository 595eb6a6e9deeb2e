"""What a change of a CustomResourceDefinition does to the rest of the server, judged by
the real kubectl and the HTTP API: kubectl's own validation of a List knows the new kind
at once (`/openapi/v2` is built again), and open watches on the kind's objects go on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.conftest import Api, eventually, run_kubectl
from tests.integration.test_api_semantics import create, watching
from tests.integration.test_custom_resources import (
    GROUP,
    WIDGETS,
    create_crd,
    widget,
    widget_crd,
)

LIST = f"""\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: beside}}
  data: {{k: v}}
- apiVersion: {GROUP}/v1
  kind: Widget
  metadata: {{name: listed}}
  spec: {{size: 2, bogus: 1}}
"""


async def test_kubectl_validates_a_new_custom_kind_in_a_list(api: Api) -> None:
    kubeconfig = api.server.write_kubeconfig()
    # kubectl fetches /openapi/v2 before the definition exists (and caches what it can)
    rc, _, err = await run_kubectl(kubeconfig, "apply", "-f", "-",
                                   stdin=LIST.replace(f"{GROUP}/v1", "v1").encode())
    assert rc != 0
    await create_crd(api, widget_crd())
    rc, out, err = await run_kubectl(kubeconfig, "apply", "-f", "-", stdin=LIST.encode())
    assert rc != 0, out
    # kube-apiserver's wording: kubectl checks the item against the published schema
    assert 'unknown field "bogus" in com.example.stable.v1.Widget.spec' in err, err
    code, _ = await api.request("GET", f"/apis/{GROUP}/v1/namespaces/default/widgets/listed")
    assert code == 404  # nothing was sent
    good = LIST.replace(", bogus: 1", "")
    rc, out, err = await run_kubectl(kubeconfig, "apply", "-f", "-", stdin=good.encode())
    assert rc == 0, err
    assert f"widget.{GROUP}/listed created" in out


async def _change_definition(api: Api, change: Any) -> None:
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
    _, current = await api.request("GET", path)
    change(current["spec"])
    code, body = await api.request("PUT", path, json=current)
    assert code == 200, body


async def test_changing_a_definition_keeps_watches_on_its_objects(api: Api) -> None:
    await create_crd(api, widget_crd())
    await create(api, WIDGETS, widget("first", size=1))
    _, listed = await api.request("GET", WIDGETS)
    rv = listed["metadata"]["resourceVersion"]
    async with watching(api, f"{WIDGETS}?watch=true&resourceVersion={rv}") as events:
        def grow(spec: dict[str, Any]) -> None:
            v1 = spec["versions"][0]
            v1["additionalPrinterColumns"].append(
                {"name": "Shape", "type": "string", "jsonPath": ".spec.shape"})
            v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["shape"] = {
                "type": "string", "default": "round"}
            v2 = json.loads(json.dumps(v1))
            v2.update(name="v2", storage=False)
            spec["versions"].append(v2)
        await _change_definition(api, grow)

        async def v2_served() -> bool:
            code, _ = await api.request("GET", f"/apis/{GROUP}/v2/namespaces/default/widgets")
            return code == 200
        await eventually(v2_served)
        # the watch opened before the change sees what is written after it, with the
        # new schema's default
        await create(api, WIDGETS, widget("second", size=2))
        ev = await events.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "second")
        assert ev["object"]["spec"]["shape"] == "round"
        _, first = await api.request("GET", f"{WIDGETS}/first")
        assert first["spec"]["shape"] == "round"  # defaults apply on read, as upstream
        _, table = await api.request("GET", WIDGETS, headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        assert "Shape" in [c["name"] for c in table["columnDefinitions"]]

        # v1 no longer served: its watch ends (the client relists and learns of it)
        def retire_v1(spec: dict[str, Any]) -> None:
            spec["versions"][0].update(served=False, storage=False)
            spec["versions"][1]["storage"] = True
        await _change_definition(api, retire_v1)
        line = await asyncio.wait_for(events.resp.content.readline(), 5.0)
        assert line == b""


async def test_a_tightened_schema_ratchets_what_an_update_leaves_alone(api: Api) -> None:
    await create_crd(api, widget_crd())
    await create(api, WIDGETS, widget("old", size=9, color="green"))

    def tighten(spec: dict[str, Any]) -> None:
        props = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"]
        props["color"]["maxLength"] = 4
        props["size"]["maximum"] = 5
    await _change_definition(api, tighten)

    async def tightened() -> bool:
        code, _ = await api.request("POST", WIDGETS, json=widget("new", size=9))
        return code == 422
    await eventually(tightened)
    merge = {"Content-Type": "application/merge-patch+json"}
    # color and size stay as they were: only the changed field is judged
    code, body = await api.request("PATCH", f"{WIDGETS}/old",
                                   json={"spec": {"replicas": 2}}, headers=merge)
    assert code == 200, body
    code, body = await api.request("PATCH", f"{WIDGETS}/old",
                                   json={"spec": {"size": 8}}, headers=merge)
    assert code == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.size"]
