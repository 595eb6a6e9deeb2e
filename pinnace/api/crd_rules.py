"""`x-kubernetes-validations`: the CEL rules of a custom resource's schema (no I/O).

`crd_schema.validate` collects every schema node's rules with the value they judge
(`RuleSite`); `evaluate` runs them on the CEL engine of `pinnace.api.cel`, the way
kube-apiserver's apiextensions validator does:

- `self` is the node's value; a rule naming `oldSelf` is a transition rule, run only
  on update and only where the old object had a value there (`oldSelf` is that value);
- a rule that is false reports `Invalid value: "<type>": <message>` at the node's path,
  or at the rule's `fieldPath` under it; the message is `messageExpression`'s value
  when that evaluates to a non-empty string, else `message`, else `failed rule: <rule>`;
  `reason` picks the cause's reason (FieldValueInvalid by default);
- a rule that does not evaluate (a missing key, a type error, the cost limit) is
  reported the same way with the CEL error in the message, never as a 500.

`compile_errors` is the definition's side: every rule (and messageExpression) of a
schema must compile, else the CustomResourceDefinition is refused with the rule's path.
Compiled programs are cached by source text: a definition's rules compile once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pinnace.api import cel
from pinnace.api.crd_schema import RuleSite, Schema
from pinnace.api.errors import Cause
from pinnace.api.field_errors import render

_OLD_SELF = re.compile(r"\boldSelf\b")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired",
            "FieldValueDuplicate")


@lru_cache(maxsize=4096)
def _program(source: str) -> cel.Program:
    return cel.compile(source)


def _type_name(node: Schema, value: Any) -> str:
    if node.get("type"):
        return str(node["type"])
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "integer" if isinstance(value, int) else "number"
    return "string"


def _join(path: str, field_path: str) -> str:
    if not field_path:
        return path or "<nil>"
    field_path = field_path.lstrip(".")
    return f"{path}.{field_path}" if path else field_path


def evaluate(sites: list[RuleSite]) -> list[Cause]:
    """The causes of the rules that fail (empty: every rule holds)."""
    out: list[Cause] = []
    for site in sites:
        for rule in site.rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
                continue
            source = rule["rule"]
            transition = bool(_OLD_SELF.search(source))
            if transition and (not site.has_old or site.old is None):
                continue
            activation: dict[str, Any] = {"self": site.value}
            if transition:
                activation["oldSelf"] = site.old
            try:
                ok = _program(source).evaluate(activation)
            except cel.CelError as e:
                out.append(Cause(_join(site.path, ""), f'Invalid value: '
                                 f'"{_type_name(site.schema, site.value)}": {source}: '
                                 f"{e.message}", "FieldValueInvalid"))
                continue
            if ok is True:
                continue
            message = _message(rule, activation)
            reason = rule.get("reason") if rule.get("reason") in _REASONS \
                else "FieldValueInvalid"
            out.append(Cause(_join(site.path, str(rule.get("fieldPath") or "")),
                             f'Invalid value: "{_type_name(site.schema, site.value)}": '
                             f"{message}", reason))
    return out


def _message(rule: dict[str, Any], activation: dict[str, Any]) -> str:
    expression = rule.get("messageExpression")
    if isinstance(expression, str) and expression:
        try:
            text = _program(expression).evaluate(activation)
        except cel.CelError:
            text = None
        if isinstance(text, str) and text.strip():
            return text
    if isinstance(rule.get("message"), str) and rule["message"]:
        return rule["message"]
    return f"failed rule: {rule['rule']}"


def compile_errors(schema: Any, path: str) -> list[Cause]:
    """A cause for every rule or messageExpression of the schema that does not compile."""
    out: list[Cause] = []
    _walk(schema, path, out)
    return out


def _walk(node: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(node, dict):
        return
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        if not isinstance(rule, dict):
            continue
        for key in ("rule", "messageExpression"):
            source = rule.get(key)
            if key == "rule" and not isinstance(source, str):
                out.append(Cause(f"{path}.x-kubernetes-validations[{i}].rule",
                                 "Required value", "FieldValueRequired"))
                continue
            if isinstance(source, str) and source:
                try:
                    _program(source)
                except cel.CelError as e:
                    out.append(Cause(f"{path}.x-kubernetes-validations[{i}].{key}",
                                     f"Invalid value: {render(source)}: {e.message}"))
    for key, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.properties[{key}]", out)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _walk(node[key], f"{path}.{key}", out)
