"""A stand-in for the node agent in controller tests: it marks every pod Running and
Ready through the status subresource soon after the pod appears."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from pinnace.client.client import Client

NS = "default"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def mark_ready(client: Client, pod: dict[str, Any]) -> None:
    """What a node agent reports once the pod's containers run and pass readiness."""
    pods = client.resource("v1", "Pod")
    t = now()
    pod = dict(pod)
    pod["status"] = {
        "phase": "Running", "startTime": t, "podIP": "10.0.0.1",
        "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                       for c in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "",
                               "ready": True, "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": t}}}
                              for c in pod["spec"]["containers"]],
    }
    with contextlib.suppress(Exception):  # gone or changed meanwhile: the loop retries
        await client.update_status(pods, pod)


async def node_loop(client: Client, *, delay: float = 0.0) -> None:
    """Mark every pod ready soon after it appears (a fake kubelet)."""
    pods = client.resource("v1", "Pod")
    while True:
        for pod in (await client.list(pods, NS))["items"]:
            if (pod.get("status") or {}).get("phase") != "Running" and \
                    not pod["metadata"].get("deletionTimestamp"):
                if delay:
                    await asyncio.sleep(delay)
                await mark_ready(client, pod)
        await asyncio.sleep(0.02)
