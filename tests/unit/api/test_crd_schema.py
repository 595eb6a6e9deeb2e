"""The structural schema of custom resources: pruning, defaulting, validation (pure)."""

from __future__ import annotations

from typing import Any

from pinnace.api import crd, crd_schema
from pinnace.api.errors import Cause

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "name": {"type": "string", "minLength": 2, "maxLength": 5,
                         "pattern": "^[a-z]+$"},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "email": {"type": "string", "format": "email"},
                "when": {"type": "string", "format": "date-time"},
                "port": {"x-kubernetes-int-or-string": True},
                "maybe": {"type": "string", "nullable": True},
                "tags": {"type": "array", "maxItems": 2, "uniqueItems": True,
                         "items": {"type": "string"}},
                "parts": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "n": {"type": "integer", "default": 7}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object"}}},
                "nested": {"type": "object", "default": {}, "properties": {
                    "depth": {"type": "integer", "default": 3}}},
            },
            "x-kubernetes-validations": [{"rule": "self.size < 100"}],
        },
    },
}


def fields(causes: list[Cause]) -> list[str]:
    return sorted(c.field for c in causes)


def obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec}


def test_valid_object_has_no_causes() -> None:
    good = obj(size=3, ratio=0.5, name="abc", color="blue", email="a@b.io",
               when="2024-01-02T03:04:05Z", port="http", maybe=None, tags=["a", "b"])
    assert crd_schema.validate(good, SCHEMA) == []
    assert crd_schema.validate(obj(size=3, port=80), SCHEMA) == []


def test_every_bad_field_is_named() -> None:
    bad = obj(size=0, ratio=1, name="ABCDEFG", color="green", email="nope",
              when="yesterday", port=1.5, tags=["a", "a", "b"], labels={"k": 1})
    causes = crd_schema.validate(bad, SCHEMA)
    assert fields(causes) == sorted([
        "spec.size", "spec.ratio", "spec.name", "spec.name", "spec.color", "spec.email",
        "spec.when", "spec.port", "spec.tags", "spec.tags", "spec.labels.k"])
    by_field = {c.field: c for c in causes}
    assert by_field["spec.size"].message == \
        "Invalid value: 0: spec.size in body should be greater than or equal to 1"
    assert by_field["spec.color"].reason == "FieldValueNotSupported"
    assert by_field["spec.labels.k"].reason == "FieldValueTypeInvalid"


def test_required_and_null() -> None:
    causes = crd_schema.validate(obj(maybe=None, name=None), SCHEMA)
    assert sorted((c.field, c.reason) for c in causes) == [
        ("spec.name", "FieldValueTypeInvalid"), ("spec.size", "FieldValueRequired")]


def test_pruning_keeps_what_the_schema_names() -> None:
    pruned, unknown = crd_schema.prune({
        **obj(size=1, extra=1, free={"a": {"b": 1}}, labels={"x": "y"},
              template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {}, "junk": 1},
              parts=[{"n": 1, "m": 2}], name=None),
        "status": {"x": 1}}, SCHEMA)
    assert unknown == ["spec.extra", "spec.template.junk", "spec.parts[0].m", "status"]
    assert pruned["spec"]["free"] == {"a": {"b": 1}}
    assert pruned["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod",
                                          "metadata": {"name": "p"}, "spec": {}}
    assert "name" not in pruned["spec"]  # null in a non-nullable field: dropped
    assert pruned["metadata"] == {"name": "w"}


def test_defaults_fill_missing_fields_top_down() -> None:
    o = obj(size=1, parts=[{}, {"n": 2}])
    crd_schema.apply_defaults(o, SCHEMA)
    assert o["spec"]["color"] == "red"
    assert o["spec"]["parts"] == [{"n": 7}, {"n": 2}]
    assert o["spec"]["nested"] == {"depth": 3}
    crd_schema.apply_defaults(o, SCHEMA)  # idempotent
    assert o["spec"]["nested"] == {"depth": 3}


def test_rules_are_handed_to_the_evaluator() -> None:
    seen: list[crd_schema.RuleSite] = []

    def evaluate(sites: list[crd_schema.RuleSite]) -> list[Cause]:
        seen.extend(sites)
        return [Cause(s.path, "Invalid value: rule failed") for s in sites]
    old = obj(size=2)
    causes = crd_schema.validate(obj(size=3), SCHEMA, old, rules=evaluate)
    assert [(s.path, s.value["size"], s.old["size"]) for s in seen] == [("spec", 3, 2)]
    assert fields(causes) == ["spec"]


def test_structural_errors_of_a_schema() -> None:
    assert crd_schema.structural_errors(SCHEMA, "s") == []
    bad = {"type": "object", "properties": {
        "a": {"properties": {}}, "b": {"type": "array"}, "c": {"type": "strin"},
        "d": {"type": "string", "pattern": "("},
        "e": {"type": "integer", "default": "x"}}}
    assert fields(crd_schema.structural_errors(bad, "s")) == [
        "s.properties[a].type", "s.properties[b].items", "s.properties[c].type",
        "s.properties[d].pattern", "s.properties[e].default"]


def test_definition_validation_and_types() -> None:
    definition = {
        "metadata": {"name": "widgets.x.io"},
        "spec": {"group": "x.io", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [
                     {"name": "v1beta1", "served": True, "storage": False,
                      "schema": {"openAPIV3Schema": {"type": "object"}}},
                     {"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object"}},
                      "subresources": {"status": {}}}]}}
    crd.apply_defaults(definition)
    assert crd.validate(definition) == []
    assert definition["spec"]["names"]["listKind"] == "WidgetList"
    types = crd.resource_types(definition)
    assert [t.version for t in types] == ["v1", "v1beta1"]  # preferred first
    assert types[0].subresources == {"status": ""} and types[0].singular == "widget"
    definition["spec"]["versions"][1]["additionalPrinterColumns"] = [
        {"name": "X", "type": "string", "jsonPath": ".spec[[["}]
    assert [c.field for c in crd.validate(definition)] == [
        "spec.versions[1].additionalPrinterColumns[0].jsonPath"]
    del definition["spec"]["versions"][1]["additionalPrinterColumns"]
    definition["spec"]["versions"][0]["storage"] = True
    definition["metadata"]["name"] = "other"
    definition["spec"]["scope"] = "Global"
    assert fields(crd.validate(definition)) == ["metadata.name", "spec.scope",
                                                "spec.versions"]


def test_version_priority() -> None:
    names = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"]
    assert sorted(names, key=crd.version_priority) == [
        "v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]


def test_printer_columns() -> None:
    from datetime import UTC, datetime
    p = crd.printer([{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                     {"name": "Ready", "type": "string",
                      "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                     {"name": "Missing", "type": "string", "jsonPath": ".spec.none"}])
    o = {**obj(size=4), "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert p.cells(o, datetime.now(UTC)) == ["w", 4, "True", None]
    assert [c[0] for c in p.columns] == ["Name", "Size", "Ready", "Missing"]


RULED: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.low <= self.high", "message": "low must not exceed high"},
            {"rule": "self.high >= oldSelf.high", "fieldPath": ".high",
             "messageExpression": "'high may only grow, was ' + string(oldSelf.high)"},
            {"rule": "!has(self.name) || self.name.startsWith('x')",
             "reason": "FieldValueForbidden", "fieldPath": ".name"}],
        "properties": {"low": {"type": "integer"}, "high": {"type": "integer"},
                       "name": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"},
                                "x-kubernetes-validations": [
                                    {"rule": "self.all(t, t.size() <= 3)"}]}}}},
}


def test_cel_rules_with_messages_paths_and_transitions() -> None:
    from pinnace.api import crd_rules

    def check(spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        causes = crd_schema.validate(obj(**spec), RULED, obj(**old) if old else None,
                                     rules=crd_rules.evaluate)
        return [(c.field, c.message) for c in causes]
    assert check({"low": 1, "high": 2}) == []
    assert check({"low": 3, "high": 2, "name": "y", "tags": ["long"]}) == [
        ("spec", 'Invalid value: "object": low must not exceed high'),
        ("spec.name", 'Invalid value: "object": failed rule: '
         "!has(self.name) || self.name.startsWith('x')"),
        ("spec.tags", 'Invalid value: "array": failed rule: self.all(t, t.size() <= 3)')]
    # the transition rule runs on update only
    assert check({"low": 1, "high": 2}, {"low": 1, "high": 5}) == [
        ("spec.high", 'Invalid value: "object": high may only grow, was 5')]
    # a runtime error is a cause, not a crash
    assert check({"high": 2})[0][0] == "spec"


def test_rules_that_do_not_compile_refuse_the_definition() -> None:
    from pinnace.api import crd_rules
    assert crd_rules.compile_errors(RULED, "s") == []
    bad = {"type": "object", "properties": {"a": {"type": "string",
                                                  "x-kubernetes-validations": [
                                                      {"rule": "self <"}]}}}
    assert [c.field for c in crd_rules.compile_errors(bad, "s")] == [
        "s.properties[a].x-kubernetes-validations[0].rule"]


def test_ratcheting_leaves_unchanged_values_alone_but_runs_transition_rules() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 2, "x-kubernetes-validations": [
            {"rule": "self.size() > 0"}, {"rule": "self == oldSelf"}]},
        "n": {"type": "integer", "maximum": 1}}}}}
    old = {"spec": {"name": "long", "n": 1}}
    seen: list[str] = []

    def rules(sites: list[crd_schema.RuleSite]) -> list[Cause]:
        seen.extend(r["rule"] for s in sites for r in s.rules)
        return []
    causes = crd_schema.validate({"spec": {"name": "long", "n": 0}}, schema, old, rules=rules)
    assert causes == []  # name kept its too-long value: not judged again
    assert seen == ["self == oldSelf"]  # only the transition rule ran on it
    changed = crd_schema.validate({"spec": {"name": "longer", "n": 5}}, schema, old)
    assert sorted(c.field for c in changed) == ["spec.n", "spec.name"]
    # without an old object (a create) everything is judged
    assert len(crd_schema.validate({"spec": {"name": "long"}}, schema)) == 1


def test_embedded_resources_name_their_kind_and_carry_object_meta() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "x-kubernetes-preserve-unknown-fields": True}}}}}
    ok = {"spec": {"template": {"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"labels": {"app": "web"}}}}}
    assert crd_schema.validate(ok, schema) == []
    bad = {"spec": {"template": {"apiVersion": "a/b/c", "kind": "Not_A_Kind",
                                 "metadata": {"name": "a/b", "labels": {"-x": "y"}}}}}
    fields = sorted(c.field for c in crd_schema.validate(bad, schema))
    assert fields == ["spec.template.apiVersion", "spec.template.kind",
                      "spec.template.metadata.labels", "spec.template.metadata.name"]
    missing = crd_schema.validate({"spec": {"template": {}}}, schema)
    assert [(c.field, c.reason) for c in missing] == [
        ("spec.template.apiVersion", "FieldValueRequired"),
        ("spec.template.kind", "FieldValueRequired")]
