"""downwardAPI volumes: pod metadata and container resources as files (kubelet's
downwardapi plugin), on tmpfs, through the atomic writer, so label and annotation
changes reach running containers on `refresh`.

fieldRef: metadata.name, .namespace, .uid, .labels, .annotations and one entry of
either (`metadata.labels['k']`). Whole maps print as sorted `key="value"` lines with
Go's %q quoting and no trailing newline. resourceFieldRef: limits/requests of cpu,
memory and ephemeral-storage of a container, divided by `divisor` and rounded up; an
unset limit is the node's allocatable, as in the kubelet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable

from pinnace.agent.volumes.atomic_writer import FileProjection, Payload
from pinnace.agent.volumes.errors import SetUpError
from pinnace.api.quantity import parse_quantity
from pinnace.api.types import Obj

PLUGIN_DIR = "kubernetes.io~downward-api"
Allocatable = Callable[[], Awaitable[dict[str, str]]]
_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.+)'\]$")


def go_quote(s: str) -> str:
    """Go's %q for a string: double quotes, backslash escapes, printable Unicode kept."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_map(m: dict[str, str]) -> str:
    return "\n".join(f"{k}={go_quote(m[k])}" for k in sorted(m))


def field_value(pod: Obj, field_path: str) -> str:
    meta = pod.get("metadata") or {}
    sub = _SUBSCRIPT.match(field_path)
    if sub:
        field = sub.group(1).split(".")[1]
        return (meta.get(field) or {}).get(sub.group(2), "")
    if field_path == "metadata.labels":
        return format_map(meta.get("labels") or {})
    if field_path == "metadata.annotations":
        return format_map(meta.get("annotations") or {})
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".")[1], ""))
    raise SetUpError(f"unsupported fieldPath: {field_path}")


async def resource_value(pod: Obj, ref: Obj, allocatable: Allocatable) -> str:
    name = ref.get("containerName", "")
    spec = pod.get("spec") or {}
    container = next((c for c in (spec.get("containers") or []) + (spec.get("initContainers")
                                                                   or []) if c["name"] == name),
                     None)
    if container is None:
        raise SetUpError(f"container {name} not found")
    resource = ref.get("resource", "")
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise SetUpError(f"unsupported container resource : {resource}")
    value = ((container.get("resources") or {}).get(kind) or {}).get(res)
    if value is None and kind == "limits":
        value = (await allocatable()).get(res)
    amount = parse_quantity(value if value is not None else 0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if res == "cpu":  # the kubelet divides millicores by the divisor's millicores
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))


async def payload(pod: Obj, source: Obj, allocatable: Allocatable,
                  default_mode: int | None = None) -> Payload:
    mode = default_mode if default_mode is not None else source.get("defaultMode", 0o644)
    out: Payload = {}
    for item in source.get("items") or []:
        if item.get("fieldRef"):
            text = field_value(pod, item["fieldRef"].get("fieldPath", ""))
        elif item.get("resourceFieldRef"):
            text = await resource_value(pod, item["resourceFieldRef"], allocatable)
        else:
            continue
        item_mode = item.get("mode")
        out[item["path"]] = FileProjection(text.encode(), mode if item_mode is None
                                           else item_mode)
    return out
