"""TTL-after-finished controller: deletes a finished Job `ttlSecondsAfterFinished`
after it finished (Kubernetes' ttl-after-finished controller).

Watches Jobs only. A finished Job (condition Complete or Failed True) with the
field set expires at its finish time (completionTime, else the terminal
condition's lastTransitionTime) plus the TTL; before that the key is queued
again for the moment it expires. At expiry the Job is read fresh from the API
(the TTL may have been changed or removed meanwhile) and deleted with Background
propagation and a uid precondition; its pods go through the garbage collector.
"""

from __future__ import annotations

import time

from pinnace.api import errors
from pinnace.api.timestamps import to_epoch
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import split_key
from pinnace.controllers.base import Controller


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.jobs_rt = client.resource("batch/v1", "Job")
        self.jobs = self.watch("batch/v1", "Job")

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        when = expires_at(job) if job is not None else None
        if when is None:
            return
        left = when - time.time()
        if left > 0:
            self.queue.add_after(key, left)
            return
        namespace, name = split_key(key)
        try:
            fresh = await self.client.get(self.jobs_rt, name, namespace)
            when = expires_at(fresh)
            if when is None or when > time.time():
                if when is not None:
                    self.queue.add_after(key, when - time.time())
                return
            await self.client.delete(self.jobs_rt, name, namespace,
                                     propagation_policy="Background",
                                     preconditions={"uid": fresh["metadata"]["uid"]})
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise


def expires_at(job: Obj) -> float | None:
    """The wall-clock time (epoch seconds) a finished Job with a TTL is due for deletion."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or job["metadata"].get("deletionTimestamp"):
        return None
    status = job.get("status") or {}
    finished = None
    for c in status.get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            finished = status.get("completionTime") or c.get("lastTransitionTime")
    when = to_epoch(finished)
    return when + ttl if when is not None else None
