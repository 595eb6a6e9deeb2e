"""The etcd store over TLS with a client certificate, as members run with
--client-cert-auth: with the certificate it works; without one etcd refuses."""

from __future__ import annotations

import asyncio

import pytest

from pinnace.store import StoreError
from pinnace.store.etcd import open_etcd
from tests.etcd_cluster import EtcdCluster


async def test_client_certificate(tmp_path) -> None:
    with EtcdCluster(tmp_path / "etcd", tls=True) as etcd:
        tls = etcd.tls_dir
        store = await open_etcd(etcd.endpoints, cafile=str(tls / "ca.crt"),
                                certfile=str(tls / "client.crt"),
                                keyfile=str(tls / "client.key"))
        try:
            events = store.watch("/t/", 0)
            kv = await store.create("/t/a", b"1")
            got = await asyncio.wait_for(anext(events), 5)  # type: ignore[arg-type]
            assert got.kv == kv and await store.get("/t/a") == kv
        finally:
            await store.close()
        with pytest.raises(StoreError):  # the CA alone: no client certificate
            await open_etcd(etcd.endpoints, cafile=str(tls / "ca.crt"), request_timeout=2)
