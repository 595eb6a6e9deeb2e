"""Done-when 5: SIGKILL during a stream of writes loses no acknowledged write."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.e2e.cluster import Cluster


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    c = Cluster(data_dir=tmp_path / "data", home=tmp_path / "home")
    c.home.mkdir()
    c.start()
    acked: dict[str, tuple[str, str]] = {}
    stop = threading.Event()
    killed = threading.Event()
    try:
        api = client.CoreV1Api(c.client())

        def writer() -> None:
            i = 0
            while not stop.is_set():
                name = f"cm-{i}"
                body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name),
                                          data={"i": str(i)})
                try:
                    out = api.create_namespaced_config_map("default", body, _request_timeout=5)
                except Exception:
                    if killed.is_set():
                        return
                    raise
                acked[name] = (out.metadata.uid, out.metadata.resource_version)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        while len(acked) < 200 and t.is_alive():
            threading.Event().wait(0.02)
        killed.set()
        c.kill()  # SIGKILL, mid-stream
        stop.set()
        t.join(30)
        assert len(acked) >= 200
        before = max(int(rv) for _, rv in acked.values())

        c.start()
        api = client.CoreV1Api(c.client())
        items = {cm.metadata.name: cm for cm in
                 api.list_namespaced_config_map("default").items}
        for name, (uid, rv) in acked.items():
            assert name in items, f"acknowledged write {name} lost"
            assert items[name].metadata.uid == uid
            assert items[name].metadata.resource_version == rv
        after = api.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="after-restart")))
        assert int(after.metadata.resource_version) > before

        # a watch from before the restart is older than the cache: 410 Gone
        with pytest.raises(ApiException) as err:
            for _ in watch.Watch().stream(api.list_namespaced_config_map, "default",
                                          resource_version="2", timeout_seconds=5):
                pass
        assert err.value.status == 410
    finally:
        stop.set()
        c.stop()
