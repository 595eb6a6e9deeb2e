"""What every controller shares: informers feeding one work queue, and workers.

A controller subclasses `Controller`, declares its informers in `__init__`
(through `self.factory`), turns events into keys with `self.enqueue`, and
implements `reconcile(key)`: read the current state from the informer caches,
write through `self.client`, raise to retry with backoff. `run()` waits for
the caches to sync, then runs the workers until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)


def owner_key(obj: dict[str, Any], kind: str) -> str | None:
    """`namespace/name` of obj's controller owner of the given kind, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            ns = obj["metadata"].get("namespace")
            return f"{ns}/{ref['name']}" if ns else ref["name"]
    return None


class Controller:
    name = "controller"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        self.client = client
        self.factory = factory
        self.queue = WorkQueue()

    def enqueue(self, obj: dict[str, Any]) -> None:
        self.queue.add(key_of(obj))

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await self.factory.wait_synced()
        log.info("%s controller started", self.name)
        try:
            await run_workers(self.queue, self.reconcile, workers=self.workers, name=self.name)
        except asyncio.CancelledError:
            self.queue.shutdown()
            raise
