"""Events the workload controllers record, as `kubectl describe` shows them.

Best effort, like client-go's recorder: an Event that cannot be written is
logged and dropped, never a reason to fail a reconcile.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pinnace.api.errors import ApiError
from pinnace.client.client import Client

log = logging.getLogger(__name__)


async def record_event(client: Client, obj: dict[str, Any], *, component: str, type_: str,
                       reason: str, message: str) -> None:
    """Write a core/v1 Event about obj (type_ is "Normal" or "Warning")."""
    m = obj["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "metadata": {"name": f"{m['name']}.{time.time_ns():x}",
                     "namespace": m.get("namespace") or "default"},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                           "name": m["name"], "namespace": m.get("namespace"),
                           "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": "",
    }
    try:
        await client.create(client.resource("v1", "Event"), event)
    except (ApiError, OSError) as e:
        log.debug("event %s on %s dropped: %s", reason, m["name"], e)
