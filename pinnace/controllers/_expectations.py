"""Expectations: what a controller has asked for and not yet seen in its informer.

Kubernetes' ControllerExpectations with the UID-tracking variant for deletions,
once for every workload controller (ReplicaSet, DaemonSet, Job):

- Before creating N pods a controller raises the key's expected creations by N;
  the pod informer's add events lower it, and so does a create that failed (the
  pod will never be seen). Counts never go below zero.
- Deletions are remembered by pod UID and lowered when the informer shows that
  pod deleted (or marked for deletion), so a relisted or duplicated event cannot
  count twice. `pending_deletions` names them, so a controller does not count a
  pod it already asked to delete as still running.
- `satisfied(key)` is true once both are met. Until then the controller does not
  manage pods again, so a cache lagging behind the controller's own writes cannot
  make it create or delete twice.
- An expectation not met within `ttl` (client-go's five minutes) counts as met: a
  lost event must not wedge a controller forever. Raising an expectation that is
  met or expired starts it afresh.

The clock is the caller's (monotonic by default), so the TTL can be tested
without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

EXPECTATIONS_TTL = 300.0


@dataclass
class _Expected:
    since: float
    adds: int = 0
    deletes: set[str] = field(default_factory=set)


class Expectations:
    def __init__(self, ttl: float = EXPECTATIONS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._by_key: dict[str, _Expected] = {}

    def _expired(self, exp: _Expected) -> bool:
        return self._clock() - exp.since > self.ttl

    def _live(self, key: str) -> _Expected | None:
        """The key's expectation while it still binds: not met and not expired."""
        exp = self._by_key.get(key)
        if exp is None or (exp.adds <= 0 and not exp.deletes) or self._expired(exp):
            return None
        return exp

    def _raise(self, key: str) -> _Expected:
        exp = self._live(key)
        if exp is None:
            exp = self._by_key[key] = _Expected(since=self._clock())
        else:
            exp.since = self._clock()  # the TTL counts from the latest request
        return exp

    def satisfied(self, key: str) -> bool:
        return self._live(key) is None

    def expect_creations(self, key: str, count: int) -> None:
        if count > 0:
            self._raise(key).adds += count

    def expect_deletions(self, key: str, uids: list[str] | set[str]) -> None:
        if uids:
            self._raise(key).deletes.update(uids)

    def creation_observed(self, key: str, count: int = 1) -> None:
        """`count` expected pods were seen, or will never be (their create failed)."""
        exp = self._by_key.get(key)
        if exp is not None:
            exp.adds = max(exp.adds - count, 0)

    def deletion_observed(self, key: str, uid: str) -> None:
        """The pod `uid` was seen going, or its delete failed (it will not go)."""
        exp = self._by_key.get(key)
        if exp is not None:
            exp.deletes.discard(uid)

    def pending_deletions(self, key: str) -> frozenset[str]:
        exp = self._live(key)
        return frozenset(exp.deletes) if exp is not None else frozenset()

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
