"""The node agent's ServiceAccount token manager (the kubelet's `token_manager.go`).

Projected `serviceAccountToken` sources ask for a token for their pod: a TokenRequest
(`POST …/serviceaccounts/<sa>/token`) bound to the pod (name and uid), for the
source's audience (none: the API's) and expirationSeconds. Tokens are kept per
(pod uid, ServiceAccount, audience, expiration) and handed out again until 80 % of
their lifetime has passed, or they are older than 24 h; then a new one is requested,
and the volume manager's periodic refresh swaps it in through the atomic writer
(before expiry, since refreshes come every few seconds). A failed renewal keeps the
old token while it is still valid, as the kubelet does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pinnace.api.errors import ApiError
from pinnace.api.timestamps import to_epoch
from pinnace.api.types import Obj

REFRESH_FRACTION = 0.8  # renew once this much of the lifetime has passed
MAX_TOKEN_AGE = 24 * 3600.0  # renew tokens older than this, whatever their lifetime


@dataclass(frozen=True)
class _Token:
    value: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        return now >= self.issued + REFRESH_FRACTION * (self.expires - self.issued) or \
            now - self.issued > MAX_TOKEN_AGE


class TokenManager:
    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[tuple[str, str, str, int], _Token] = {}

    async def token(self, pod: Obj, *, audience: str, expiration_seconds: int) -> str:
        """A token of the pod's ServiceAccount bound to the pod; ApiError if none can be had."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        key = (meta["uid"], sa, audience, expiration_seconds)
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.value
        body: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"audiences": [audience] if audience else [],
                              "expirationSeconds": expiration_seconds,
                              "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                 "name": meta["name"], "uid": meta["uid"]}}}
        try:
            answer = await self.client.post_subresource(
                self.client.resource("v1", "ServiceAccount"), sa, "token", body,
                meta["namespace"])
        except ApiError:
            if cached is not None and now < cached.expires:
                return cached.value  # still good: try again on the next refresh
            raise
        status = answer.get("status") or {}
        expires = to_epoch(status.get("expirationTimestamp")) or now + expiration_seconds
        self._tokens[key] = _Token(status.get("token", ""), now, expires)
        return self._tokens[key].value

    def forget(self, pod_uid: str) -> None:
        """Drop the tokens of a pod that is gone."""
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]
