"""Shared informers: one list+watch per resource type, however many components use it.

    factory = InformerFactory(client)
    pods = factory.informer("v1", "Pod")     # the same Informer for every caller
    await factory.start()                     # runs them all, waits until synced

Informers asked for after `start()` are started at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from pinnace.client.client import Client
from pinnace.client.informer import Informer


class InformerFactory:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, str, str], Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    def informer(self, api_version: str, kind: str, *, field_selector: str = "",
                 label_selector: str = "") -> Informer:
        key = (f"{api_version}/{kind}", field_selector, label_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, self.client.resource(api_version, kind),
                           field_selector=field_selector, label_selector=label_selector)
            inf.add_index("namespace", lambda o: [o["metadata"].get("namespace") or ""])
            self._informers[key] = inf
            if self._started:
                self._tasks.append(asyncio.create_task(inf.run(), name=f"informer {key}"))
        return inf

    async def start(self) -> None:
        self._started = True
        for key, inf in self._informers.items():
            self._tasks.append(asyncio.create_task(inf.run(), name=f"informer {key}"))
        await self.wait_synced()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
