"""The client and informer against a real API server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pinnace.api import errors
from pinnace.client.client import Client
from pinnace.client.informer import Informer
from tests.integration.conftest import eventually


async def test_client_errors_carry_status(client: Client) -> None:
    cms = client.resource("v1", "ConfigMap")
    with pytest.raises(errors.ApiError) as err:
        await client.get(cms, "missing", "default")
    assert err.value.code == 404 and err.value.reason == "NotFound"
    await client.create(cms, {"metadata": {"name": "a"}}, "default")
    with pytest.raises(errors.ApiError) as err:
        await client.create(cms, {"metadata": {"name": "a"}}, "default")
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"


async def test_informer_follows_changes(client: Client) -> None:
    cms = client.resource("v1", "ConfigMap")
    await client.create(cms, {"metadata": {"name": "before", "labels": {"t": "1"}}}, "default")
    inf = Informer(client, cms, namespace="default")
    seen: list[tuple[str, str]] = []
    inf.add_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                    on_update=lambda a, b: seen.append(("update", b["metadata"]["name"])),
                    on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    inf.add_index("t", lambda o: [(o["metadata"].get("labels") or {}).get("t", "")])
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), 5)
        assert ("add", "before") in seen
        await client.create(cms, {"metadata": {"name": "after", "labels": {"t": "1"}}},
                            "default")
        await client.patch(cms, "after", {"data": {"k": "v"}}, namespace="default")
        await client.delete(cms, "before", "default")
        await eventually(lambda: ("delete", "before") in seen and ("update", "after") in seen)
        assert [o["metadata"]["name"] for o in inf.by_index("t", "1")] == ["after"]
        assert inf.get("default/after")["data"] == {"k": "v"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_shared_factory_indexes_one_name_one_function(client: Client) -> None:
    """Two CronJob controllers on one factory register the same index (the same lambda
    of one line); another function under that name is refused, naming the index. The
    index registered late on a synced informer covers what it already holds."""
    from pinnace.client.factory import InformerFactory
    from pinnace.controllers.cronjob import CronJobController
    factory = InformerFactory(client)
    CronJobController(client, factory)
    CronJobController(client, factory)
    jobs = factory.informer("batch/v1", "Job")
    with pytest.raises(ValueError, match="cronjob-controller:owner"):
        jobs.add_index("cronjob-controller:owner", lambda j: [j["metadata"]["name"]])
    cms = client.resource("v1", "ConfigMap")
    await client.create(cms, {"metadata": {"name": "c1", "labels": {"t": "x"}}}, "default")
    configmaps = factory.informer("v1", "ConfigMap")
    await factory.start()
    try:
        await asyncio.wait_for(configmaps.wait_synced(), 5)
        configmaps.add_index("t", lambda o: [(o["metadata"].get("labels") or {}).get("t", "")])
        assert [o["metadata"]["name"] for o in configmaps.by_index("t", "x")] == ["c1"]
    finally:
        await factory.stop()
