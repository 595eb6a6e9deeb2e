"""Events the scheduler records (core/v1 Event), written in the background.

Writing an Event never delays scheduling: `record` only queues it, a few workers
write. A repeat of the same reason and message for the same pod bumps `count` and
`lastTimestamp` of the Event already written, as client-go's correlator does.
Events are best effort: a failed write is logged and dropped. The body is
`pinnace.api.events.event_for`, shared with the controllers.
"""

from __future__ import annotations

import asyncio
import logging

from pinnace.api.events import event_for, event_time
from pinnace.client.client import Client
from pinnace.client.workqueue import run_parallel
from pinnace.scheduler.framework import Obj

log = logging.getLogger(__name__)

COMPONENT = "default-scheduler"
MAX_PENDING = 10_000


class EventRecorder:
    def __init__(self, client: Client, *, component: str = COMPONENT, workers: int = 4) -> None:
        self.client = client
        self.component = component
        self.events_rt = client.resource("v1", "Event")
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue()
        self._last: dict[str, tuple[str, str, int]] = {}  # pod uid -> (message, name, count)
        self._workers = workers

    def record(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        if self._queue.qsize() >= MAX_PENDING:
            return  # shed load rather than grow without bound
        self._queue.put_nowait((pod, event_type, reason, message))

    def forget(self, pod_uid: str) -> None:
        self._last.pop(pod_uid, None)

    async def run(self) -> None:
        await run_parallel(self._worker, self._workers, name="event-recorder")

    async def _worker(self) -> None:
        while True:
            pod, event_type, reason, message = await self._queue.get()
            try:
                await self._write(pod, event_type, reason, message)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("event %s for %s not written: %s", reason,
                          pod["metadata"].get("name"), e)

    async def _write(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        m = pod["metadata"]
        ns, uid = m.get("namespace") or "default", m.get("uid", "")
        now = event_time()
        last = self._last.get(uid)
        if last and last[0] == f"{reason}\0{message}":
            name, count = last[1], last[2] + 1
            self._last[uid] = (last[0], name, count)
            await self.client.patch(self.events_rt, name, {"count": count, "lastTimestamp": now},
                                    namespace=ns)
            return
        # the pod as an involvedObject, whether or not the cached copy names its kind
        event = event_for({**pod, "apiVersion": "v1", "kind": "Pod"}, component=self.component,
                          type_=event_type, reason=reason, message=message,
                          reporting_instance=self.component, now=now)
        self._last[uid] = (f"{reason}\0{message}", event["metadata"]["name"], 1)
        await self.client.create(self.events_rt, event, ns)
