"""Leader election over a real API server: one leader at a time, handover on release
and on a stale Lease, and an HTTP transport failing over to the next server URL."""

from __future__ import annotations

import asyncio
from typing import Any

from pinnace.client.client import Client
from pinnace.client.leader_election import LeaderElectionConfig, LeaderElector
from pinnace.client.transport import HttpTransport
from tests.integration.conftest import eventually
from tests.ports import free_port

# short, yet with a renew deadline a loaded machine's stalls (seen: > 1 s under a load of
# 10 on 2 cores) do not cross, or the leader would step down in the middle of a test
FAST = LeaderElectionConfig(lease_duration=4.0, renew_deadline=3.0, retry_period=0.2)


class Candidate:
    """An elector and what it does while leading: sits there, recorded in `acting`."""

    def __init__(self, client: Client, identity: str, acting: set[str]) -> None:
        self.elector = LeaderElector(client, "test-lock", FAST, identity=identity)
        self.acting = acting
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.acting.add(self.elector.identity)
        try:
            await asyncio.Event().wait()
        finally:
            self.acting.discard(self.elector.identity)

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self._lead))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def lease(client: Client) -> dict[str, Any]:
    return await client.get(client.resource("coordination.k8s.io/v1", "Lease"), "test-lock",
                            "kube-system")


async def test_one_leader_then_handover_on_release(client: Client) -> None:
    acting: set[str] = set()
    a, b = Candidate(client, "a", acting), Candidate(client, "b", acting)
    a.start()
    await eventually(lambda: acting == {"a"})
    b.start()
    for _ in range(25):  # several retry periods and more than a lease duration
        assert acting == {"a"}
        await asyncio.sleep(0.2)
    await a.stop()  # releases the Lease: b need not wait for it to expire
    await eventually(lambda: acting == {"b"}, within=FAST.lease_duration)
    spec = (await lease(client))["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    await b.stop()
    assert (await lease(client))["spec"]["holderIdentity"] == ""


async def test_a_stale_lease_is_taken_over(client: Client) -> None:
    leases = client.resource("coordination.k8s.io/v1", "Lease")
    # held by a process that died: nobody renews it
    await client.create(leases, {"metadata": {"name": "test-lock", "namespace": "kube-system"},
                                 "spec": {"holderIdentity": "dead", "leaseDurationSeconds": 2,
                                          "renewTime": "2026-01-01T00:00:00.000000Z"}})
    acting: set[str] = set()
    b = Candidate(client, "b", acting)
    b.start()
    await asyncio.sleep(1.0)
    assert acting == set()  # not before the lease duration has passed on b's clock
    await eventually(lambda: acting == {"b"}, within=3.0)
    await b.stop()


async def test_transport_fails_over_to_the_next_server(api: Any) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    client = Client(HttpTransport([dead, api.url], token=api.server.token,
                                  ca_pem=api.server.ca_pem))
    try:
        ns = await client.get(client.resource("v1", "Namespace"), "default")
        assert ns["metadata"]["name"] == "default"
        assert client.transport.server == api.url  # type: ignore[attr-defined]
    finally:
        await client.close()
