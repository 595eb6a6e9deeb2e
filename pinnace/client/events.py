"""Events the controllers and node agents record, as `kubectl describe` shows them.

Best effort, like client-go's recorder: an Event that cannot be written is
logged and dropped, never a reason to fail a reconcile. The Event's body is
`pinnace.api.events.event_for`, shared with the scheduler.
"""

from __future__ import annotations

import logging
from typing import Any

from pinnace.api.events import event_for
from pinnace.client.client import Client

log = logging.getLogger(__name__)


async def record_event(client: Client, obj: dict[str, Any], *, component: str, type_: str,
                       reason: str, message: str, field_path: str = "", host: str = "") -> None:
    """Write a core/v1 Event about obj (type_ is "Normal" or "Warning"); field_path names
    the part of it, e.g. `spec.containers{app}`, host the node reporting it."""
    event = event_for(obj, component=component, type_=type_, reason=reason, message=message,
                      field_path=field_path, host=host)
    try:
        await client.create(client.resource("v1", "Event"), event)
    except Exception as e:  # any failure: an Event is never worth failing a reconcile
        log.debug("event %s on %s dropped: %s", reason, obj["metadata"]["name"], e)
