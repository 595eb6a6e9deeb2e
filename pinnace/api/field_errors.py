"""Field errors in Kubernetes' wording, the vocabulary every validation rule speaks.

`FieldErrors` collects one `Cause` per problem with the messages of
`k8s.io/apimachinery/pkg/util/validation/field` ("Required value", "Invalid value: \"x\":
...", "Unsupported value: ..."), values printed the way Go's `%q`/`%d`/`%#v` print them.
Rules append to one collector and never raise, so a request learns every problem at once;
`validation.validate` turns the collection into one 422 Invalid.

Validation runs on bodies that passed typed decoding, but rules still read them through
`as_str`/`as_dict`/`as_list`, which turn a wrong shape into an empty value rather than a
crash.
"""

from __future__ import annotations

from typing import Any

from pinnace.api.errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    Cause,
)

NOT_FOUND = "FieldValueNotFound"


def render(value: Any) -> str:
    """A value the way Kubernetes' field errors print it (Go's %q / %d / %#v)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{render(k)}:{render(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(render(v) for v in value) + "}"
    return repr(value)


class FieldErrors:
    """Collects `Cause`s with the messages of k8s.io/apimachinery/pkg/util/validation/field."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, field: str, message: str, reason: str) -> None:
        cause = Cause(field, message, reason)
        if cause not in self.causes:
            self.causes.append(cause)

    def required(self, field: str, detail: str = "") -> None:
        self.add(field, "Required value" + (f": {detail}" if detail else ""), REQUIRED)

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.add(field, f"Invalid value: {render(value)}: {detail}", INVALID)

    def not_supported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        allowed = ", ".join(render(s) for s in supported)
        self.add(field, f"Unsupported value: {render(value)}: supported values: {allowed}",
                 NOT_SUPPORTED)

    def duplicate(self, field: str, value: Any) -> None:
        self.add(field, f"Duplicate value: {render(value)}", DUPLICATE)

    def forbidden(self, field: str, detail: str) -> None:
        self.add(field, f"Forbidden: {detail}", FORBIDDEN)

    def not_found(self, field: str, value: Any) -> None:
        self.add(field, f"Not found: {render(value)}", NOT_FOUND)

    def too_long(self, field: str, limit: int) -> None:
        self.add(field, f"Too long: must have at most {limit} bytes", TOO_LONG)

    def immutable(self, field: str, value: Any) -> None:
        self.invalid(field, value, "field is immutable")

    def enum(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        if value is not None and value not in supported:
            self.not_supported(field, value, supported)

    def at_least(self, field: str, value: Any, low: int) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            self.invalid(field, value, f"must be greater than or equal to {low}")


# --- reading JSON-like values --------------------------------------------------------------------

def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def set_or_drop(obj: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value
