"""Keys under a TTL prefix (Events) expire in etcd after their last write, with a DELETE
event to watchers, and a write after their lease vanished gets a fresh one."""

from __future__ import annotations

import asyncio

from pinnace.store.etcd import open_etcd
from tests.etcd_cluster import EtcdCluster


async def test_keys_expire_with_their_lease(tmp_path) -> None:
    with EtcdCluster(tmp_path / "etcd") as etcd:
        store = await open_etcd(etcd.endpoints, lease_ttls={"/ev/": 2, "/long/": 100})
        try:
            events = store.watch("/ev/", 0)
            kv = await store.create("/ev/a", b"1")
            plain = await store.create("/other/a", b"1")
            first = await asyncio.wait_for(anext(events), 5)  # type: ignore[arg-type]
            assert first.type == "PUT" and first.kv == kv
            gone = await asyncio.wait_for(anext(events), 10)  # type: ignore[arg-type]
            assert gone.type == "DELETE" and gone.kv.key == "/ev/a" and gone.prev == kv
            assert await store.get("/ev/a") is None
            assert await store.get("/other/a") == plain  # no TTL outside the prefix

            # the lease this store reuses (for 5 s) is revoked behind its back
            await store.create("/long/a", b"1")
            lease_id, _ = store._leases[100]
            await store._call("lease/revoke", {"ID": lease_id})
            assert await store.get("/long/a") is None
            again = await store.create("/long/b", b"2")  # with a fresh lease
            assert await store.get("/long/b") == again
            assert store._leases[100][0] != lease_id
        finally:
            await store.close()
