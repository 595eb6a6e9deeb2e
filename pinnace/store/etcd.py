"""The store on an etcd v3 cluster: what kube-apiserver stores in, for control planes of
several API servers (Debian's `etcd-server`, 3.4 or newer).

The client is etcd's own gRPC-JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`,
`/v3/watch`, …), which every member serves on its client URL, spoken over aiohttp. Why
not a client library: `aetcd` (asyncio, maintained) and `grpcio` with stubs generated
from etcd's protos would bring grpcio (a large native wheel) for one module, and aetcd
talks to one endpoint. The gateway needs nothing beyond aiohttp, which the project already
uses; TLS client certificates are an `ssl.SSLContext`; watch is a streamed HTTP response
of newline-separated JSON messages, one stream per watch; failover between members is
ours (below). The cost is JSON and base64 instead of protobuf (`bench/api.py` measures it).

Mapping onto `interface.Store`:

- etcd's revision is the resourceVersion, less one: an empty etcd is at revision 1, the
  interface's empty store at 0, so every revision crossing this module is shifted by
  `_BASE`. Every API server on one etcd shifts alike, so resourceVersions agree.
- create = txn(create_revision == 0 → put); update(expected) = txn(mod_revision ==
  expected → put, else range) and delete likewise, so a conflict answers with the
  current value in the same round trip. `expected_revision` 0 compares
  create_revision > 0 (the key exists).
- range(prefix) reads pages of `_PAGE` keys at the revision of the first page: one
  consistent snapshot however long the list.
- watch(prefix, from) streams from `from + 1` with prev_kv (a DELETE's value is its
  prev_kv's). When a member goes away, the watch reconnects to the next endpoint from the
  last revision it delivered: no gap, no duplicate. A start older than the compaction
  ends in `CompactedError` (410 Gone upstream).
- Keys under a `lease_ttls` prefix (Events: kube-apiserver's --event-ttl, 1 h) are written
  with a lease; one lease is reused for a twentieth of the TTL, as kube-apiserver's lease
  manager does, so a burst of Events costs one grant.
- `revision` is the newest revision this process has seen in any response header
  (its own writes, its watches' progress notifications), as kube-apiserver knows it.

Unary requests go to the current endpoint; a connection refused or a member without a
leader moves to the next endpoint and tries again until `request_timeout`. A write whose
connection broke after it was sent is not retried (it may have been applied): the caller
gets a StoreError and decides, as with any failed API call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from pinnace.api.backoff import exponential_delay
from pinnace.store._lifecycle import StoreLifecycle
from pinnace.store.interface import (
    CompactedError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    StoreError,
)

__all__ = ["EVENT_TTL", "EtcdConfig", "EtcdStore", "open_etcd"]

log = logging.getLogger(__name__)

_BASE = 1  # an empty etcd is at revision 1; the interface's empty store at 0
_PAGE = 5000  # keys per range request
# the wait before trying the next member, doubling per failure in a row
_RETRY_BASE, _RETRY_CAP = 0.05, 1.0
EVENT_TTL = 3600  # seconds: kube-apiserver's --event-ttl default
# where Events live (core/v1 and events.k8s.io/v1): see ResourceType.key_prefix
EVENT_PREFIXES = ("/registry/core/events/", "/registry/events.k8s.io/events/")
# gRPC codes the gateway reports that mean "this member cannot serve now": try another
_UNAVAILABLE = {14, 4}  # Unavailable, DeadlineExceeded
_RETRYABLE_MESSAGES = ("no leader", "leader changed", "timed out", "too many requests",
                       "not capable", "stopped")


@dataclass(frozen=True, kw_only=True)
class EtcdConfig:
    """Where the store is (`pinnace server --store etcd`'s flags)."""
    endpoints: tuple[str, ...]  # the members' client URLs
    cafile: str | None = None  # the members' CA (https endpoints)
    certfile: str | None = None  # our client certificate, when the members ask for one
    keyfile: str | None = None
    event_ttl: int = EVENT_TTL  # seconds an Event lives after its last write


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with prefix (etcd's
    GetPrefixRangeEnd); b"\\0" means "to the end of the keyspace"."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"
    end[-1] += 1
    return bytes(end)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        base64.b64decode(raw["key"]).decode(),
        base64.b64decode(raw.get("value", "")),
        int(raw.get("create_revision", 0)) - _BASE,
        int(raw.get("mod_revision", 0)) - _BASE,
    )


class EtcdStore(StoreLifecycle):
    """The `Store` protocol on an etcd v3 cluster. Create it with `open_etcd`."""

    _compaction_failed = "etcd compaction to revision %d failed"

    def __init__(self, endpoints: list[str], session: aiohttp.ClientSession, *,
                 history_window: int = 10_000, request_timeout: float = 10.0,
                 lease_ttls: dict[str, int] | None = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._session = session
        self._history_window = history_window
        self._timeout = request_timeout
        self._lease_ttls = dict(lease_ttls if lease_ttls is not None else
                                dict.fromkeys(EVENT_PREFIXES, EVENT_TTL))
        self._leases: dict[int, tuple[str, float]] = {}  # ttl → (lease id, granted at)
        self._lease_lock = asyncio.Lock()
        self._revision = 0
        self._compacted = 0
        self._closed = False
        self._streams: set[aiohttp.ClientResponse] = set()
        self._compactor: asyncio.Task[None] | None = None

    # -- properties -----------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    # -- requests -------------------------------------------------------------------

    def _saw(self, header: dict[str, Any] | None) -> None:
        if header and "revision" in header:
            self._revision = max(self._revision, int(header["revision"]) - _BASE)

    def _next_endpoint(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self._endpoints)

    async def _call(self, path: str, body: dict[str, Any], *, idempotent: bool = True,
                    endpoint: str | None = None) -> dict[str, Any]:
        """POST to /v3/<path> on the current member, moving to the next one while members
        are unreachable or leaderless, for at most `request_timeout` seconds."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        failures = 0
        last_error = ""
        while True:
            index = self._current
            base = endpoint or self._endpoints[index]
            timeout = aiohttp.ClientTimeout(total=max(0.5, deadline - loop.time()))
            try:
                async with self._session.post(f"{base}/v3/{path}", json=body,
                                              timeout=timeout) as resp:
                    raw = await resp.read()
                    data = json.loads(raw) if raw else {}
                    status = resp.status
            except aiohttp.ClientConnectorError as e:
                last_error = str(e)  # nothing was sent: safe to try elsewhere
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                    TimeoutError) as e:
                if not idempotent:
                    self._next_endpoint(index)
                    raise StoreError(f"etcd {base}: {e!r} (the write may have been applied)"
                                     ) from e
                last_error = repr(e)
            else:
                if status == 200:
                    self._saw(data.get("header"))
                    return data
                message = str(data.get("error") or data.get("message") or raw[:200])
                if "compacted" in message:
                    raise CompactedError(self._compacted)
                retryable = data.get("code") in _UNAVAILABLE or any(
                    m in message for m in _RETRYABLE_MESSAGES)
                if not retryable or (not idempotent and data.get("code") == 4):
                    raise StoreError(f"etcd {base}: {message}")
                last_error = message
            failures += 1
            delay = exponential_delay(_RETRY_BASE, _RETRY_CAP, failures)
            if endpoint is not None or loop.time() + delay > deadline:
                raise StoreError(f"etcd unavailable ({', '.join(self._endpoints)}): "
                                 f"{last_error}")
            self._next_endpoint(index)
            await asyncio.sleep(delay)

    async def _lease_for(self, key: str) -> str | None:
        """The lease a write of key carries (None: the key does not expire)."""
        ttl = next((t for p, t in self._lease_ttls.items() if key.startswith(p)), None)
        if ttl is None:
            return None
        reuse = max(1.0, ttl / 20)
        async with self._lease_lock:
            now = asyncio.get_running_loop().time()
            held = self._leases.get(ttl)
            if held is not None and now - held[1] < reuse:
                return held[0]
            # the lease outlives its last key's write by at least ttl
            granted = await self._call("lease/grant", {"TTL": str(int(ttl + reuse))})
            self._leases[ttl] = (str(granted["ID"]), now)
            return str(granted["ID"])

    async def _put_op(self, key: str, value: bytes) -> dict[str, Any]:
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value), "prev_kv": True}
        lease = await self._lease_for(key)
        if lease is not None:
            put["lease"] = lease
        return {"request_put": put}

    # -- reads ----------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        data = await self._call("kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every live key under prefix, sorted by key, and the revision they were read at
        (pages of `_PAGE` keys, all read at the first page's revision)."""
        start = prefix.encode() or b"\0"
        end = _b64(_prefix_end(prefix.encode()))
        out: list[KeyValue] = []
        pinned = 0
        while True:
            body: dict[str, Any] = {"key": _b64(start), "range_end": end, "limit": _PAGE}
            if pinned:
                body["revision"] = str(pinned)
            data = await self._call("kv/range", body)
            if not pinned:
                pinned = int(data["header"]["revision"])
            kvs = data.get("kvs") or []
            out.extend(_kv(kv) for kv in kvs)
            if not data.get("more") or not kvs:
                return out, pinned - _BASE
            start = base64.b64decode(kvs[-1]["key"]) + b"\0"

    # -- writes ---------------------------------------------------------------------

    async def _txn(self, key: str, compare: dict[str, Any],
                   success: dict[str, Any]) -> dict[str, Any]:
        compare = {"key": _b64(key), **compare}
        failure = {"request_range": {"key": _b64(key)}}
        body = {"compare": [compare], "success": [success], "failure": [failure]}
        try:
            return await self._call("kv/txn", body, idempotent=False)
        except StoreError as e:
            put = success.get("request_put")
            if put is None or "lease" not in put or "lease not found" not in str(e):
                raise
        # the reused lease is gone (revoked, or etcd restored from a backup): a new one;
        # a refused txn changed nothing, so sending it again is safe
        self._leases.clear()
        success = {"request_put": {**put, "lease": await self._lease_for(key)}}
        return await self._call("kv/txn", {**body, "success": [success]}, idempotent=False)

    @staticmethod
    def _compare(expected_revision: int) -> dict[str, Any]:
        if expected_revision:
            return {"target": "MOD", "result": "EQUAL",
                    "mod_revision": str(expected_revision + _BASE)}
        return {"target": "CREATE", "result": "GREATER", "create_revision": "0"}

    @staticmethod
    def _refused(key: str, data: dict[str, Any]) -> StoreError:
        kvs = (data.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return KeyNotFoundError(key)
        return RevisionConflictError(_kv(kvs[0]))

    async def create(self, key: str, value: bytes) -> KeyValue:
        data = await self._txn(key, {"target": "CREATE", "result": "EQUAL",
                                     "create_revision": "0"}, await self._put_op(key, value))
        if not data.get("succeeded"):
            raise KeyExistsError(key)
        revision = int(data["header"]["revision"]) - _BASE
        return KeyValue(key, value, revision, revision)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Compare-and-swap: replace key if its mod_revision is expected_revision
        (0 means any)."""
        data = await self._txn(key, self._compare(expected_revision),
                               await self._put_op(key, value))
        if not data.get("succeeded"):
            raise self._refused(key, data)
        prev = data["responses"][0]["response_put"]["prev_kv"]
        revision = int(data["header"]["revision"]) - _BASE
        return KeyValue(key, value, int(prev["create_revision"]) - _BASE, revision)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete key; returns the deleted value (mod_revision = the delete's revision)."""
        op = {"request_delete_range": {"key": _b64(key), "prev_kv": True}}
        data = await self._txn(key, self._compare(expected_revision), op)
        if not data.get("succeeded"):
            raise self._refused(key, data)
        prev = _kv(data["responses"][0]["response_delete_range"]["prev_kvs"][0])
        revision = int(data["header"]["revision"]) - _BASE
        return KeyValue(key, prev.value, prev.create_revision, revision)

    # -- watch ----------------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events under prefix with revision > from_revision, in revision order, with no
        gap; from_revision 0 means "from now" (the newest revision seen at this call).
        Raises CompactedError (when iterated) if from_revision is compacted away."""
        self._check_open()
        if from_revision == 0:
            return self._watch(prefix, self._revision)
        if from_revision < self._compacted:
            return self._compacted_watch()
        return self._watch(prefix, from_revision)

    async def _compacted_watch(self) -> AsyncIterator[Event]:
        raise CompactedError(self._compacted)
        yield  # pragma: no cover - makes this an async generator

    async def _watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        key = prefix.encode() or b"\0"
        end = _prefix_end(prefix.encode())
        failures = 0  # since the last event: a member that streams again is not backed off
        while not self._closed:
            index = self._current
            body = {"create_request": {
                "key": _b64(key), "range_end": _b64(end), "prev_kv": True,
                "progress_notify": True, "start_revision": str(after + 1 + _BASE)}}
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
            try:
                async with self._session.post(f"{self._endpoints[index]}/v3/watch",
                                              json=body, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise StoreError(f"etcd watch: HTTP {resp.status}")
                    self._streams.add(resp)
                    try:
                        async for result in _messages(resp):
                            self._saw(result.get("header"))
                            for event in self._events(result):
                                if event.kv.mod_revision > after:
                                    after = event.kv.mod_revision
                                    failures = 0
                                    yield event
                    finally:
                        self._streams.discard(resp)
            except (aiohttp.ClientError, OSError, StoreError, ValueError) as e:
                if isinstance(e, CompactedError):
                    raise
                if not self._closed:
                    log.info("etcd watch of %s on %s ended (%r); resuming after %d",
                             prefix, self._endpoints[index], e, after)
            if self._closed:
                return
            self._next_endpoint(index)
            failures += 1
            await asyncio.sleep(exponential_delay(_RETRY_BASE, _RETRY_CAP, failures))

    def _events(self, result: dict[str, Any]) -> list[Event]:
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            self._compacted = max(self._compacted, compacted - _BASE)
            raise CompactedError(compacted - _BASE)
        if result.get("canceled"):
            raise StoreError(f"etcd canceled the watch: {result.get('cancel_reason', '')}")
        out = []
        for ev in result.get("events") or ():
            raw_prev = ev.get("prev_kv")
            prev = _kv(raw_prev) if raw_prev else None
            if ev.get("type", "PUT") == "DELETE":
                gone = _kv(ev["kv"])
                kv = KeyValue(gone.key, prev.value, prev.create_revision,
                              gone.mod_revision) if prev else gone
                out.append(Event("DELETE", kv, prev))
            else:
                out.append(Event("PUT", _kv(ev["kv"]), prev))
        return out

    # -- compaction -----------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Forget history older than revision (latest values are kept)."""
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        try:
            await self._call("kv/compaction", {"revision": str(revision + _BASE)})
        except CompactedError:
            pass  # another API server compacted as far already
        self._compacted = revision

    async def scrub(self) -> None:
        """Forget all history and defragment every member, so superseded values (the
        plaintext before encryption) leave the members' files too."""
        await self.compact(self._revision)
        for endpoint in self._endpoints:
            with contextlib.suppress(StoreError):
                await self._call("maintenance/defragment", {}, endpoint=endpoint)

    # -- lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Stop compaction, end every watch, close the connections."""
        if not await self._stop():
            return
        for resp in list(self._streams):
            resp.close()
        await self._session.close()


async def _messages(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The gateway's stream: one JSON message a line, `{"result": …}` or `{"error": …}`."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while (cut := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:cut], buffer[cut + 1:]
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                error = message["error"]
                raise StoreError(f"etcd watch: {error.get('message', error)}")
            yield message.get("result") or {}


def client_ssl_context(cafile: str | None = None, certfile: str | None = None,
                       keyfile: str | None = None) -> ssl.SSLContext | None:
    """TLS to the members: their CA, and our client certificate when they ask for one."""
    if not (cafile or certfile):
        return None
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


async def open_etcd(endpoints: list[str], *, cafile: str | None = None,
                    certfile: str | None = None, keyfile: str | None = None,
                    history_window: int = 10_000, compact_interval: float = 300.0,
                    request_timeout: float = 10.0,
                    lease_ttls: dict[str, int] | None = None) -> EtcdStore:
    """Connect to the etcd cluster at endpoints (http[s]://host:port, the members' client
    URLs), learn its revision, and start the periodic compaction that keeps the last
    `history_window` revisions. `lease_ttls` maps key prefixes to the seconds their keys
    live after their last write (default: Events, `EVENT_TTL`)."""
    context = client_ssl_context(cafile, certfile, keyfile)
    connector = aiohttp.TCPConnector(limit=0, ssl=context if context is not None else True)
    session = aiohttp.ClientSession(connector=connector, trust_env=False)
    store = EtcdStore(endpoints, session, history_window=history_window,
                      request_timeout=request_timeout, lease_ttls=lease_ttls)
    try:
        await store._call("kv/range", {"key": _b64(b"\0"), "count_only": True})
    except BaseException:
        await store.close()
        raise
    store._start_compactor(compact_interval, name="pinnace-etcd-compactor")
    return store


async def open_etcd_config(config: EtcdConfig, *, history_window: int = 10_000
                           ) -> EtcdStore:
    """`open_etcd` as `config` says."""
    return await open_etcd(list(config.endpoints), cafile=config.cafile,
                           certfile=config.certfile, keyfile=config.keyfile,
                           history_window=history_window,
                           lease_ttls=dict.fromkeys(EVENT_PREFIXES, config.event_ttl))
