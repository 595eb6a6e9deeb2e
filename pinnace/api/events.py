"""The body of a core/v1 Event, as `kubectl describe` and `kubectl get events` show it.

One pure function, so every component that records Events writes the same fields.
Correlation of repeats, sending and best-effort error handling are the recorder's
(`pinnace.client.events`).
"""

from __future__ import annotations

import time

from pinnace.api.timestamps import format_time
from pinnace.api.types import Obj


def event_for(obj: Obj, *, component: str, type_: str, reason: str, message: str,
              reporting_instance: str = "", now: str | None = None, field_path: str = "",
              host: str = "") -> Obj:
    """A new Event (count 1) about obj; type_ is "Normal" or "Warning".

    Named `<object name>.<unique hex>` in the object's namespace ("default" for
    cluster-scoped objects), like client-go's recorder.
    """
    m = obj["metadata"]
    ns = m.get("namespace") or "default"
    stamp = now or format_time()
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
