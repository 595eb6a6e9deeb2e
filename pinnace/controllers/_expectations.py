"""Expectations: what a controller has asked for and not yet seen in its informer.

Before creating N pods a controller records N expected creations; the pod
informer's add events count them down, a failed create counts one down at
once. Deletions are remembered by pod UID, counted down when the informer
sees the pod deleted (or marked for deletion). Until both are met the
controller does not manage replicas again, so a cache that lags behind its
own writes cannot make it create or delete twice. Expectations older than
`ttl` are considered met, as Kubernetes does, so a lost event cannot wedge a
controller forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Expectations:
    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._by_key.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deletes:
            return True
        return time.monotonic() - exp.since > self.ttl

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expected(adds=count)

    def expect_deletions(self, key: str, uids: list[str]) -> None:
        self._by_key[key] = _Expected(deletes=set(uids))

    def creation_observed(self, key: str, count: int = 1) -> None:
        exp = self._by_key.get(key)
        if exp is not None:
            exp.adds -= count

    def deletion_observed(self, key: str, uid: str) -> None:
        exp = self._by_key.get(key)
        if exp is not None:
            exp.deletes.discard(uid)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
