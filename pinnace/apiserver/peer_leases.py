"""Which API servers are alive: one Lease per server in kube-system, as kube-apiserver's
lease-based endpoint reconciler keeps one per server, so the `kubernetes` Service's
Endpoints list every live server of a cluster on one etcd.

Each server renews its Lease `apiserver-<hash of address:port>` (label
`apiserver.kubernetes.io/identity: kube-apiserver`, its address in an annotation) every
reconcile round; a Lease not renewed for its duration belongs to a server that died, and
the next round of any server deletes it. A server that stops deletes its own.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pinnace.api import errors
from pinnace.api.timestamps import format_micro_time, to_epoch
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions

NAMESPACE = "kube-system"
IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
ADDRESS_ANNOTATION = "pinnace.io/apiserver-address"  # "ip:port" where the server serves
LEASE_DURATION = 15  # seconds (kube-apiserver's endpoint reconciler TTL)
_OPTS = WriteOptions(field_manager="pinnace")


def lease_name(address: str, port: int) -> str:
    return "apiserver-" + hashlib.sha256(f"{address}:{port}".encode()).hexdigest()[:16]


def _leases(reg: ObjectRegistry) -> Any:
    rt = reg.kinds.by_kind("coordination.k8s.io", "v1", "Lease")
    assert rt is not None
    return rt


async def renew(reg: ObjectRegistry, address: str, port: int) -> None:
    """Create or renew this server's Lease."""
    rt = _leases(reg)
    name = lease_name(address, port)
    spec = {"holderIdentity": f"{address}:{port}", "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": format_micro_time(time.time())}
    current = reg.cache(rt).get(NAMESPACE, name)
    if current is None:
        await reg.create(rt, NAMESPACE, {"metadata": {
            "name": name, "labels": {IDENTITY_LABEL: "kube-apiserver"},
            "annotations": {ADDRESS_ANNOTATION: f"{address}:{port}"}}, "spec": spec}, _OPTS)
        return
    await reg.update(rt, NAMESPACE, name, {**current, "spec": {**current["spec"], **spec}},
                     _OPTS)


async def live_servers(reg: ObjectRegistry) -> list[tuple[str, int]]:
    """(address, port) of every server whose Lease is current; expired Leases are deleted."""
    rt = _leases(reg)
    now = time.time()
    out = []
    for lease in reg.cache(rt).list(NAMESPACE):
        meta = lease["metadata"]
        if (meta.get("labels") or {}).get(IDENTITY_LABEL) != "kube-apiserver":
            continue
        address = (meta.get("annotations") or {}).get(ADDRESS_ANNOTATION, "")
        spec = lease.get("spec") or {}
        renewed = to_epoch(spec.get("renewTime")) or 0.0
        if renewed + (spec.get("leaseDurationSeconds") or LEASE_DURATION) < now:
            await remove(reg, meta["name"], meta.get("resourceVersion"))
            continue
        host, _, port = address.rpartition(":")
        if host and port.isdigit():
            out.append((host, int(port)))
    return sorted(out)


async def remove(reg: ObjectRegistry, name: str, revision: str | None = None) -> None:
    """Delete a server's Lease (only as of `revision` when given: not one just renewed)."""
    options = {"preconditions": {"resourceVersion": revision}} if revision else {}
    try:
        await reg.delete(_leases(reg), NAMESPACE, name, options, _OPTS)
    except errors.ApiError as e:
        if e.code not in (404, 409):
            raise
