"""The garbage collector and custom resources (kinds it learns from discovery): a custom
object owns a ConfigMap and `kubectl delete` of it, in the background and in the
foreground, takes the ConfigMap with it; a custom object owned by a ConfigMap goes
with its owner."""

from __future__ import annotations

from typing import Any

from pinnace.api.kinds import ResourceType
from pinnace.client.client import Client
from pinnace.client.discovery import discover_kinds
from pinnace.controllers.garbage_collector import GarbageCollector
from tests.integration.conftest import Api, Components, eventually, run_kubectl
from tests.integration.test_custom_resources import GROUP, create_crd, widget, widget_crd
from tests.integration.test_garbage_collector import NS, gone, ref


async def _widgets(client: Client) -> ResourceType:
    found = [rt for rt in await discover_kinds(client) if rt.plural == "widgets"]
    assert [rt.api_version for rt in found] == [f"{GROUP}/v1"]
    return found[0]


async def _owned_configmap(client: Client, name: str, owner: dict[str, Any]) -> None:
    await client.create(client.resource("v1", "ConfigMap"), {
        "metadata": {"name": name, "ownerReferences": [ref(owner)]}, "data": {"k": "v"}}, NS)


async def test_deleting_a_custom_owner_cascades(api: Api, client: Client,
                                                components: Components) -> None:
    await components.start(GarbageCollector(client, components.factory))
    await create_crd(api, widget_crd())  # defined after the collector started
    widgets = await _widgets(client)
    kubeconfig = api.server.write_kubeconfig()
    for name, cascade in (("bg", "background"), ("fg", "foreground")):
        owner = await client.create(widgets, widget(name, size=1), NS)
        await _owned_configmap(client, f"{name}-cm", owner)
        rc, out, err = await run_kubectl(kubeconfig, "delete", f"widget/{name}",
                                         f"--cascade={cascade}", "--wait=true")
        assert rc == 0, err
        assert f'widget.{GROUP} "{name}" deleted' in out
        # kubectl waited for the owner; the collector takes the dependent
        await eventually(lambda n=name: gone(client, "v1", "ConfigMap", f"{n}-cm"))
    # a dependent of a custom kind goes with its built-in owner
    cm = await client.create(client.resource("v1", "ConfigMap"),
                             {"metadata": {"name": "parent"}}, NS)
    await client.create(widgets, {**widget("child", size=1), "metadata": {
        "name": "child", "ownerReferences": [ref(cm)]}}, NS)
    await client.delete(client.resource("v1", "ConfigMap"), "parent", NS)

    async def child_gone() -> bool:
        return not [w for w in (await client.list(widgets, NS))["items"]
                    if w["metadata"]["name"] == "child"]
    await eventually(child_gone)


async def test_foreground_deletion_waits_for_the_dependent(api: Api, client: Client,
                                                           components: Components) -> None:
    await create_crd(api, widget_crd())
    widgets = await _widgets(client)
    owner = await client.create(widgets, widget("held", size=1), NS)
    await client.create(client.resource("v1", "ConfigMap"), {"metadata": {
        "name": "held-cm", "ownerReferences": [ref(owner)],
        "finalizers": ["example.com/hold"]}}, NS)
    await components.start(GarbageCollector(client, components.factory))
    await client.delete(widgets, "held", NS, propagation_policy="Foreground")

    async def owner_waits() -> bool:
        cm = await client.get(client.resource("v1", "ConfigMap"), "held-cm", NS)
        return bool(cm["metadata"].get("deletionTimestamp"))
    await eventually(owner_waits)
    got = await client.get(widgets, "held", NS)
    assert got["metadata"]["finalizers"] == ["foregroundDeletion"]
    await client.patch(client.resource("v1", "ConfigMap"), "held-cm",
                       {"metadata": {"finalizers": None}}, namespace=NS)

    async def owner_gone() -> bool:
        return not (await client.list(widgets, NS))["items"]
    await eventually(owner_gone)


async def test_in_process_clients_discover_custom_kinds(api: Api, local_client: Any) -> None:
    assert not [rt for rt in await discover_kinds(local_client) if rt.group == GROUP]
    await create_crd(api, widget_crd())
    found = {rt.plural: rt for rt in await discover_kinds(local_client)}
    assert found["widgets"].namespaced and found["widgets"].kind == "Widget"
    assert "scale" not in found  # subresources are not kinds
