"""The ServiceAccount controller: every namespace gets a `default` ServiceAccount."""

from __future__ import annotations

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.controllers.serviceaccount import ServiceAccountsController
from tests.integration.conftest import Components, eventually


async def has_default(client: Client, namespace: str) -> bool:
    try:
        await client.get(client.resource("v1", "ServiceAccount"), "default", namespace)
    except errors.ApiError as e:
        assert e.code == 404
        return False
    return True


async def test_default_service_account(client: Client, components: Components) -> None:
    await components.start(ServiceAccountsController(client, components.factory))
    await eventually(lambda: has_default(client, "default"))
    await client.create(client.resource("v1", "Namespace"), {"metadata": {"name": "team"}})
    await eventually(lambda: has_default(client, "team"))
    first = await client.get(client.resource("v1", "ServiceAccount"), "default", "team")
    await client.delete(client.resource("v1", "ServiceAccount"), "default", "team")

    async def recreated() -> bool:
        try:
            sa = await client.get(client.resource("v1", "ServiceAccount"), "default", "team")
        except errors.ApiError:
            return False
        return sa["metadata"]["uid"] != first["metadata"]["uid"]
    await eventually(recreated)
