"""What a printer is, and the cell helpers every printer shares.

A `Printer` pairs a kind's column definitions with a pure function (object, now) ->
cells, plus optional row conditions (a finished pod's "Completed"). A column's
description is literal text or a (definition, field) pair read from the OpenAPI schema,
as Kubernetes' printers take theirs from the API docs. Time-relative cells (AGE,
"5 (3m ago)", job DURATION) go through `human_duration`, Kubernetes'
`duration.HumanDuration`, against the `now` the caller passes.

The per-kind printers live in `printers_workloads` and `printers_cluster`; `tables`
maps kinds to them and builds the Table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pinnace.api import schema
from pinnace.api.timestamps import parse_time

Obj = Mapping[str, Any]
Cells = list[Any]

# ---------------------------------------------------------------------------
# time


def human_duration(seconds: float) -> str:
    """Kubernetes' `duration.HumanDuration`: "5s", "3m20s", "2d5h", "<invalid>"."""
    secs = int(seconds)  # Go truncates toward zero
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        s = secs % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def since(text: Any, now: datetime) -> str:
    t = parse_time(text)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())

# ---------------------------------------------------------------------------
# column definitions


@functools.cache
def _doc(definition: str, field: str) -> str:
    node = schema.definition(definition) or {}
    prop = (node.get("properties") or {}).get(field) or {}
    return prop.get("description", "")


META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CORE = "io.k8s.api.core.v1."
# A column: (name, type, priority, description) where description is literal
# text or (definition, field) to read from the OpenAPI schema.
Column = tuple[str, str, int, str | tuple[str, str]]


def name_column(priority: int = 0) -> Column:
    return ("Name", "string", priority, (META, "name"))


AGE: Column = ("Age", "string", 0, (META, "creationTimestamp"))


def column_dicts(columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    out = []
    for name, type_, priority, desc in columns:
        out.append({
            "name": name,
            "type": type_,
            "format": "name" if name == "Name" else "",
            "description": desc if isinstance(desc, str) else _doc(*desc),
            "priority": priority,
        })
    return out


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Callable[[Obj, datetime], Cells]
    conditions: Callable[[Obj], list[dict[str, str]]] | None = None

# ---------------------------------------------------------------------------
# helpers shared by printers


def nested(obj: Any, *path: str, default: Any = None) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(part)
    return default if obj is None else obj


def metadata_of(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def age(obj: Obj, now: datetime) -> str:
    return since(metadata_of(obj).get("creationTimestamp"), now)
