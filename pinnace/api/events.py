"""The body of a core/v1 Event, as `kubectl describe` and `kubectl get events` show it.

One pure function, so every component that records Events (the controllers, the
scheduler) writes the same fields. Sending, best-effort error handling and
aggregation of repeats stay with each recorder.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def event_time(now: datetime | None = None) -> str:
    """An Event timestamp: RFC 3339, whole seconds, UTC."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_for(obj: Obj, *, component: str, type_: str, reason: str, message: str,
              reporting_instance: str = "", now: str | None = None, field_path: str = "",
              host: str = "") -> Obj:
    """A new Event (count 1) about obj; type_ is "Normal" or "Warning".

    Named `<object name>.<unique hex>` in the object's namespace ("default" for
    cluster-scoped objects), like client-go's recorder.
    """
    m = obj["metadata"]
    ns = m.get("namespace") or "default"
    stamp = now or event_time()
    involved = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                "name": m["name"], "namespace": m.get("namespace"),
                "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}
    if field_path:
        involved["fieldPath"] = field_path
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "metadata": {"name": f"{m['name']}.{time.time_ns():x}", "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": type_,
        "source": source,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "reportingComponent": component, "reportingInstance": reporting_instance or host,
    }
