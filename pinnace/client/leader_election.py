"""Leader election through coordination.k8s.io Leases, as client-go's `leaderelection`.

Several `pinnace server`s on one etcd each run the controllers and the scheduler; one
Lease in kube-system per role (`kube-controller-manager`, `kube-scheduler`) decides
which process acts. The rules are client-go's:

- A candidate tries every `retry_period` (with jitter) to take the Lease: it may when
  the Lease is missing, has no holder, or has not changed for `leaseDurationSeconds`
  *as observed by this candidate's own clock* (the record's renewTime is another
  machine's clock, so it is not compared with ours). Taking it is an update with the
  resourceVersion read: of two candidates only one wins.
- The leader renews every `retry_period`; when no renewal succeeded for
  `renew_deadline` it stops acting (its components are cancelled) before the Lease can
  have expired for the others (`renew_deadline` < `lease_duration`), so two leaders
  never act at once while clocks run at the same rate.
- Stopping releases the Lease (no holder, 1 s duration), so a successor need not wait.
  A leader whose process dies is replaced once `lease_duration` has passed.

Defaults are client-go's and kube-controller-manager's: 15 s, 10 s, 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pinnace.api import errors
from pinnace.api.timestamps import format_micro_time
from pinnace.client.client import Client
from pinnace.client.workqueue import run_parallel

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
JITTER = 1.2  # client-go's JitterFactor for the acquire loop


@dataclass(frozen=True, kw_only=True)
class LeaderElectionConfig:
    """kube-controller-manager's --leader-elect-* flags."""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < "
                             "lease duration")


def default_identity() -> str:
    """client-go's: the host name and a unique suffix (one per process)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Holds (or waits for) the Lease `namespace/name` for `identity`."""

    def __init__(self, client: Client, name: str, config: LeaderElectionConfig, *,
                 identity: str = "", namespace: str = NAMESPACE) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.config = config
        self.identity = identity or default_identity()
        self._leases = client.resource("coordination.k8s.io/v1", "Lease")
        self._lease: dict[str, Any] | None = None
        # what we last saw of the record and when (our monotonic clock)
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.is_leader = False

    # -- one attempt ---------------------------------------------------------------------

    def _spec(self, current: dict[str, Any]) -> dict[str, Any]:
        now = format_micro_time(time.time())
        mine = current.get("holderIdentity") == self.identity
        return {**current, "holderIdentity": self.identity,
                "leaseDurationSeconds": math.ceil(self.config.lease_duration),
                "acquireTime": current.get("acquireTime") if mine else now,
                "renewTime": now,
                "leaseTransitions": (current.get("leaseTransitions") or 0) + (0 if mine else 1)}

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True when we hold it now."""
        try:
            lease = await self.client.get(self._leases, self.name, self.namespace)
        except errors.ApiError as e:
            if e.code != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**self._spec({}), "leaseTransitions": 0}}
            try:
                self._lease = await self.client.create(self._leases, body)
            except errors.ApiError as e2:
                if e2.code == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = spec.get("leaseDurationSeconds") or self.config.lease_duration
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # held by another, and alive as far as we have seen
        lease["spec"] = self._spec(spec)
        try:
            self._lease = await self.client.update(self._leases, lease)
        except errors.ApiError as e:
            if e.code == 409:  # someone else wrote it since our read
                return False
            raise
        return True

    async def _attempt(self) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(),
                                          self.config.retry_period * 2)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the API is away: as a failed attempt
            log.debug("leader election %s: %r", self.name, e)
            return False

    # -- the loop ------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Until we hold the Lease."""
        while True:
            if await self._attempt():
                break
            await asyncio.sleep(self.config.retry_period * (1 + random.random() * JITTER))
        self.is_leader = True
        log.info("%s: %s became the leader", self.name, self.identity)

    async def keep(self) -> None:
        """Renew every retry period; returns when no renewal succeeded within the renew
        deadline (leadership is lost)."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + self.config.renew_deadline
            while not await self._attempt():
                if loop.time() + self.config.retry_period >= deadline:
                    self.is_leader = False
                    log.warning("%s: %s lost the lease", self.name, self.identity)
                    return
                await asyncio.sleep(self.config.retry_period)
            await asyncio.sleep(self.config.retry_period)

    async def release(self) -> None:
        """Give the Lease up (if we hold it) so a successor takes it at once."""
        lease, self._lease = self._lease, None
        if not self.is_leader or lease is None:
            return
        self.is_leader = False
        lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": "",
                         "leaseDurationSeconds": 1, "renewTime": format_micro_time(time.time())}
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.update(self._leases, lease), 5)

    async def run(self, lead: Callable[[], Any]) -> None:
        """Forever: wait to lead, then run `lead()` (a coroutine) while leading; it is
        cancelled when the Lease is lost, and called again after the next acquire.
        Cancelling `run` cancels `lead()` and releases the Lease."""
        try:
            while True:
                await self.acquire()
                acting = asyncio.create_task(lead(), name=f"{self.name} (leader)")
                keeping = asyncio.create_task(self.keep(), name=f"{self.name} lease")
                try:
                    await asyncio.wait({acting, keeping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in (acting, keeping):
                        t.cancel()
                    outcome, _ = await asyncio.gather(acting, keeping, return_exceptions=True)
                if isinstance(outcome, Exception):
                    raise outcome  # a component failed: as without leader election
        finally:
            await self.release()


class Runnable(Protocol):
    async def run(self) -> None: ...


class LeaderElected:
    """Components that act only while `elector` leads: the first term runs `first`,
    every later term fresh ones from `build()` (a component cannot run twice: its
    queues are shut down when it stops)."""

    def __init__(self, elector: LeaderElector, first: Sequence[Runnable],
                 build: Callable[[], Sequence[Runnable]]) -> None:
        self.elector = elector
        self._next: Sequence[Runnable] | None = first
        self._build = build

    async def run(self) -> None:
        await self.elector.run(self._lead)

    async def _lead(self) -> None:
        components, self._next = list(self._next or self._build()), None
        each = iter(components)
        await run_parallel(lambda: next(each).run(), len(components), name=self.elector.name)
