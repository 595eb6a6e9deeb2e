"""Event recording against a real API server: repeated identical events become one
Event with a growing count, as `kubectl describe` shows it ("x5 over 40s"), and the
scheduler's background writes go through the same recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnace.client.client import Client
from pinnace.client.events import record_event, recorder_for
from tests.integration.conftest import Api, eventually, run_kubectl

NS = "default"


async def kubectl(api: Api, home: Path, *args: str) -> str:
    rc, out, err = await run_kubectl(api.server.write_kubeconfig(), *args, home=home)
    assert rc == 0, err
    return out


async def make_pod(client: Client, name: str) -> dict[str, Any]:
    pod = await client.create(client.resource("v1", "Pod"), {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}}, NS)
    return {**pod, "apiVersion": "v1", "kind": "Pod"}


async def events_about(client: Client, name: str) -> list[dict[str, Any]]:
    out = await client.list(client.resource("v1", "Event"), NS,
                            field_selector=f"involvedObject.name={name}")
    return out["items"]


async def test_repeated_event_is_one_event_with_a_count_in_describe(
        api: Api, client: Client, tmp_path: Path) -> None:
    pod = await make_pod(client, "crashy")
    for _ in range(5):
        await record_event(client, pod, component="kubelet", type_="Warning", reason="BackOff",
                           message="Back-off restarting failed container app in pod crashy",
                           field_path="spec.containers{app}", host="node-1")
    events = await events_about(client, "crashy")
    assert len(events) == 1
    (ev,) = events
    assert ev["count"] == 5
    assert ev["reason"] == "BackOff" and ev["source"] == {"component": "kubelet",
                                                         "host": "node-1"}
    assert ev["firstTimestamp"] <= ev["lastTimestamp"]

    home = tmp_path / "home"
    home.mkdir()
    out = await kubectl(api, home, "describe", "pod", "crashy", "-n", NS)
    (line,) = [ln for ln in out.splitlines() if "BackOff" in ln]
    assert "(x5 over" in line and "Back-off restarting failed container" in line


async def test_a_different_message_is_another_event(client: Client) -> None:
    pod = await make_pod(client, "two")
    for message in ("first", "second", "first"):
        await record_event(client, pod, component="kubelet", type_="Normal", reason="Pulled",
                           message=message)
    events = sorted(await events_about(client, "two"), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [("first", 2), ("second", 1)]


async def test_background_record_writes_and_counts(client: Client) -> None:
    """`record` (the scheduler's way: never awaited) queues; writers drain it."""
    pod = await make_pod(client, "queued")
    recorder = recorder_for(client)
    assert recorder_for(client) is recorder
    for _ in range(3):
        recorder.record(pod, component="default-scheduler", type_="Warning",
                        reason="FailedScheduling", message="0/0 nodes are available",
                        reporting_instance="default-scheduler")

    async def counted() -> bool:
        events = await events_about(client, "queued")
        return len(events) == 1 and events[0]["count"] == 3
    await eventually(counted)
    await recorder.close()


async def test_recreates_an_event_deleted_under_it(client: Client) -> None:
    pod = await make_pod(client, "gone")
    await record_event(client, pod, component="c", type_="Normal", reason="R", message="m")
    (ev,) = await events_about(client, "gone")
    await client.delete(client.resource("v1", "Event"), ev["metadata"]["name"], NS)
    await record_event(client, pod, component="c", type_="Normal", reason="R", message="m")
    (again,) = await events_about(client, "gone")
    assert again["metadata"]["name"] == ev["metadata"]["name"] and again["count"] == 2

