"""Names, labels, annotations and label selectors: the formats Kubernetes enforces.

Each `*_problems` function returns the messages of apimachinery's
`util/validation` for one format (RFC 1123 subdomain and label, DNS-1035 label,
qualified name, label value, config key, path segment): an empty list means valid. The
`check_*` functions apply them to a field and record the problems in `FieldErrors`.
These are the one implementation of the formats: label selectors
(`pinnace.api.selectors`) check their keys and values here too, and matching a
selector is `selectors.LabelSelector`'s.
"""

from __future__ import annotations

import re
from typing import Any

from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED + r")?"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric "
                  "character (e.g. 'example.com', regex used for validation is "
                  f"'{_SUBDOMAIN}')")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
              f"or '123-abc', regex used for validation is '{_LABEL}')")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035}')")
_QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                  "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                  f"'my.name',  or '123-abc', regex used for validation is '{_QUALIFIED}')")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    f"validation is '{_LABEL_VALUE}')")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or "
                   f"'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                   f"validation is '{_CONFIG_KEY}')")


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _format_problems(value: str, limit: int, pattern: str, message: str) -> list[str]:
    """The two checks of every format: a length limit, then the regex (both may fail)."""
    out = []
    if len(value) > limit:
        out.append(f"must be no more than {limit} characters")
    if not _full(pattern, value):
        out.append(message)
    return out


def subdomain_problems(value: str) -> list[str]:
    return _format_problems(value, 253, _SUBDOMAIN, _SUBDOMAIN_MSG)


def label_problems(value: str) -> list[str]:
    return _format_problems(value, 63, _LABEL, _LABEL_MSG)


def dns1035_problems(value: str) -> list[str]:
    return _format_problems(value, 63, _DNS1035, _DNS1035_MSG)


def path_segment_problems(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def qualified_name_problems(value: str) -> list[str]:
    """Label and annotation keys, label-selector keys: `[prefix/]name` (apimachinery's
    IsQualifiedName, every problem reported, in its order)."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + _QUALIFIED_MSG.removeprefix("name part ")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    out = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            out.append("prefix part must be non-empty")
        else:
            out.extend("prefix part " + p for p in subdomain_problems(prefix))
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _full(_QUALIFIED, name):
        out.append(_QUALIFIED_MSG)
    return out


def label_value_problems(value: str) -> list[str]:
    return _format_problems(value, 63, _LABEL_VALUE, _LABEL_VALUE_MSG)


def config_key_problems(value: str) -> list[str]:
    out = _format_problems(value, 253, _CONFIG_KEY, _CONFIG_KEY_MSG)
    if value in (".", ".."):
        out.append(f"must not be '{value}'")
    elif value.startswith(".."):
        out.append("must not start with '..'")
    return out


# --- labels and annotations ----------------------------------------------------------------------

def check_labels(labels: Any, path: str, errs: FieldErrors) -> None:
    for key, value in as_dict(labels).items():
        for msg in qualified_name_problems(key):
            errs.invalid(path, key, msg)
        for msg in label_value_problems(as_str(value)):
            errs.invalid(path, value, msg)


def check_annotations(annotations: Any, path: str, errs: FieldErrors) -> None:
    total = 0
    for key, value in as_dict(annotations).items():
        for msg in qualified_name_problems(key.lower()):
            errs.invalid(path, key, msg)
        total += len(key) + len(as_str(value))
    if total > 256 * 1024:
        errs.too_long(path, 256 * 1024)


# --- label selectors -----------------------------------------------------------------------------

def check_selector(selector: Any, path: str, errs: FieldErrors) -> None:
    selector = as_dict(selector)
    check_labels(selector.get("matchLabels"), f"{path}.matchLabels", errs)
    for i, expr in enumerate(as_list(selector.get("matchExpressions"))):
        expr = as_dict(expr)
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        errs.enum(f"{epath}.operator", op, ("In", "NotIn", "Exists", "DoesNotExist"))
        values = as_list(expr.get("values"))
        if op in ("In", "NotIn") and not values:
            errs.required(f"{epath}.values",
                          "must be specified when `operator` is 'In' or 'NotIn'")
        if op in ("Exists", "DoesNotExist") and values:
            errs.forbidden(f"{epath}.values",
                           "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        for msg in qualified_name_problems(as_str(expr.get("key"))):
            errs.invalid(f"{epath}.key", expr.get("key"), msg)
