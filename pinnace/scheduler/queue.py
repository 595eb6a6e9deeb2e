"""The scheduling queue: active, backoff and unschedulable pods (Kubernetes' three).

- activeQ: pods ready to be tried, highest priority first, then oldest first.
- backoffQ: pods that failed recently wait 1 s, doubling per attempt up to 10 s.
- unschedulable: pods no node fits; they stay until a cluster event that could
  make room (node added or updated, pod deleted) moves them back — to backoffQ if
  their backoff has not yet run out, else to activeQ — or until they have waited
  `max_unschedulable` seconds (a safety net, 5 minutes as in Kubernetes).

If a cluster event arrives while a pod is being tried, a failure of that attempt
goes to backoffQ, not unschedulable: the event may have been the one it needed.

Every time the queue reads comes from its `clock` (monotonic seconds, the event
loop's clock by default), so backoff and the safety net can be driven by a clock
that is moved by hand; `pop` looks again whenever it is woken or its nearest
deadline passes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pinnace.api.backoff import exponential_delay
from pinnace.api.types import Obj

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0


@dataclass
class QueuedPod:
    key: str
    pod: Obj
    attempts: int = 0
    added: float = 0.0
    backoff_until: float = 0.0
    cycle: int = 0  # the move-request counter when last popped
    priority: int = field(default=0)


def _changed(old: Obj, new: Obj) -> bool:
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return old.get("spec") != new.get("spec") or om.get("labels") != nm.get("labels") or \
        om.get("annotations") != nm.get("annotations")


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


class SchedulingQueue:
    def __init__(self, *, initial_backoff: float = INITIAL_BACKOFF,
                 max_backoff: float = MAX_BACKOFF,
                 max_unschedulable: float = MAX_UNSCHEDULABLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._seq = itertools.count()
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._unschedulable: dict[str, QueuedPod] = {}
        self._pods: dict[str, QueuedPod] = {}  # every pod the queue holds, by key
        self._where: dict[str, str] = {}  # key -> "active" | "backoff" | "unschedulable"
        self._in_flight: set[str] = set()
        self._move_count = 0
        self._last_stale_check = 0.0
        self._wake = asyncio.Event()

    def _now(self) -> float:
        return self.clock()

    def __len__(self) -> int:
        return len(self._where)

    def pending(self) -> dict[str, int]:
        counts = {"active": 0, "backoff": 0, "unschedulable": 0}
        for where in self._where.values():
            counts[where] += 1
        return counts

    # -- informer events -------------------------------------------------------------------

    def add(self, key: str, pod: Obj) -> None:
        """A new unscheduled pod, or an update to one: try it (again) soon."""
        qp = self._pods.get(key)
        if qp is None:
            qp = self._pods[key] = QueuedPod(key, pod, added=self._now(),
                                            priority=_priority(pod))
            if key not in self._in_flight:
                self._push_active(qp)
            return
        old, qp.pod = qp.pod, pod
        # A spec or label change may be what an unschedulable pod needed (a toleration,
        # smaller requests); a status change (our own PodScheduled condition) is not.
        if self._where.get(key) == "unschedulable" and _changed(old, pod):
            del self._unschedulable[key]
            self._requeue(qp)

    def delete(self, key: str) -> None:
        self._pods.pop(key, None)
        self._unschedulable.pop(key, None)
        self._where.pop(key, None)  # stale heap entries are skipped on pop

    def move_all_to_active(self) -> None:
        """A cluster event that may make unschedulable pods fit."""
        self._move_count += 1
        moving = list(self._unschedulable.values())
        self._unschedulable.clear()
        for qp in moving:
            self._requeue(qp)

    # -- the scheduler's side --------------------------------------------------------------

    async def pop(self) -> QueuedPod:
        while True:
            self._flush()
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                if self._where.get(key) != "active":
                    continue
                del self._where[key]
                qp = self._pods[key]
                qp.attempts += 1
                qp.cycle = self._move_count
                self._in_flight.add(key)
                return qp
            self._wake.clear()
            timeout = self._next_flush()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The attempt on key is over and it was bound (or no longer needs scheduling)."""
        self._in_flight.discard(key)
        self._pods.pop(key, None)

    def requeue_unschedulable(self, qp: QueuedPod) -> None:
        """The attempt failed: park the pod until something changes (or back off, if
        something changed while it was being tried)."""
        self._in_flight.discard(qp.key)
        if qp.key not in self._pods:
            return  # deleted meanwhile
        qp.backoff_until = self._now() + self._backoff_of(qp)
        if self._move_count > qp.cycle:
            self._push_backoff(qp)
        else:
            qp.added = self._now()
            self._unschedulable[qp.key] = qp
            self._where[qp.key] = "unschedulable"

    def requeue_error(self, qp: QueuedPod) -> None:
        """An error (not the pod's fault, e.g. a failed binding): retry after backoff."""
        self._in_flight.discard(qp.key)
        if qp.key not in self._pods:
            return
        qp.backoff_until = self._now() + self._backoff_of(qp)
        self._push_backoff(qp)

    # -- internals -------------------------------------------------------------------------

    def _backoff_of(self, qp: QueuedPod) -> float:
        # attempts counts this one: the first failure waits initial_backoff
        return exponential_delay(self.initial_backoff, self.max_backoff, max(qp.attempts, 1))

    def _requeue(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self._now():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        self._where[qp.key] = "active"
        heapq.heappush(self._active, (-qp.priority, qp.added, next(self._seq), qp.key))
        self._wake.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        self._where[qp.key] = "backoff"
        heapq.heappush(self._backoff, (qp.backoff_until, next(self._seq), qp.key))
        self._wake.set()

    def _flush(self) -> None:
        now = self._now()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._where.get(key) == "backoff":
                self._push_active(self._pods[key])
        if now - self._last_stale_check < 1.0:
            return
        self._last_stale_check = now
        stale = [qp for qp in self._unschedulable.values()
                 if now - qp.added >= self.max_unschedulable]
        for qp in stale:
            del self._unschedulable[qp.key]
            self._requeue(qp)

    def _next_flush(self) -> float:
        now = self._now()
        deadlines = [now + 1.0]  # the unschedulable safety net is checked each second
        if self._backoff:
            deadlines.append(self._backoff[0][0])
        return max(min(deadlines) - now, 0.0)
