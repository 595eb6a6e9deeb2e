"""CustomResourceDefinitions: their own validation and defaults, and the resource types
(one per served version) that a definition adds to the kinds registry.

A definition is served as Kubernetes' apiextensions-apiserver serves it: every served
version becomes a `ResourceType` whose `custom` is a `CustomVersion` (the version's
structural schema, printer columns, scale paths, deprecation warning). The versions of
one definition share one store prefix (`/registry/<group>/<plural>/`); conversion
`None` only rewrites apiVersion, which the watch cache of each version does on read.
Versions are listed in Kubernetes' version priority (GA > beta > alpha, higher
numbers first), so discovery's preferred version is the one kubectl would pick.

Pure functions; the API server's `crd_serving` module applies them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse

from pinnace.api import crd_rules, crd_schema
from pinnace.api.errors import Cause
from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str
from pinnace.api.kinds import ResourceType, selectable_paths
from pinnace.api.printing import Cells, Column, Obj, Printer, name_column, since

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_SCALE = "autoscaling/v1:Scale"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_VERSION = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


@dataclass(frozen=True, eq=False)
class CustomVersion:
    """What serving one version of a custom resource needs beyond its names."""

    crd_name: str
    schema: dict[str, Any]
    storage: bool
    printer: Printer
    deprecation_warning: str | None = None
    # scale subresource: JSON paths (".spec.replicas") of the replica counts
    scale: dict[str, str] = field(default_factory=dict)
    has_status: bool = False
    # the version objects are written in, and the definition's spec.conversion (JSON)
    storage_version: str = ""
    conversion: str = '{"strategy": "None"}'
    # conversion `Webhook`: what converts objects between versions (the API server's
    # crd_conversion.Converter, set when it serves the version); None: rewrite apiVersion
    converter: Any = None


# ------------------------------------------------------------------------------ versions

def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key, smallest first, of Kubernetes' version priority: v2 > v1 > v1beta2 >
    v1beta1 > v1alpha1 > other names (alphabetical)."""
    m = _VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


# ---------------------------------------------------------------------------- defaults

def apply_defaults(crd: Obj) -> None:
    """Defaults of a CustomResourceDefinition (SetDefaults_CustomResourceDefinition)."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    conversion = spec.setdefault("conversion", {})
    if isinstance(conversion, dict):
        conversion.setdefault("strategy", "None")
    if spec.get("preserveUnknownFields") is None:
        spec["preserveUnknownFields"] = False


# --------------------------------------------------------------------------- validation

def validate(crd: Obj, old: Obj | None = None) -> list[Cause]:
    """Every problem of a definition, with its field path (ValidateCustomResourceDefinition,
    the parts clients meet)."""
    errs = FieldErrors()
    meta = as_dict(crd.get("metadata"))
    spec = as_dict(crd.get("spec"))
    names = as_dict(spec.get("names"))
    group = as_str(spec.get("group"))
    plural = as_str(names.get("plural"))
    if not group:
        errs.required("spec.group")
    elif not _DNS_SUBDOMAIN.match(group) or "." not in group:
        errs.invalid("spec.group", group, "should be a domain with at least one dot")
    if meta.get("name") != f"{plural}.{group}":
        errs.invalid("metadata.name", meta.get("name"),
                     "must be spec.names.plural+\".\"+spec.group")
    _validate_names(names, errs)
    scope = spec.get("scope")
    if scope is None:
        errs.required("spec.scope")
    elif scope not in ("Namespaced", "Cluster"):
        errs.not_supported("spec.scope", scope, ("Cluster", "Namespaced"))
    versions = as_list(spec.get("versions"))
    if not versions:
        errs.required("spec.versions", "must have exactly one version marked as storage "
                      "version")
    storage = 0
    seen: set[str] = set()
    for i, version in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(version, dict):
            errs.invalid(path, version, "must be an object")
            continue
        name = as_str(version.get("name"))
        if not name:
            errs.required(f"{path}.name")
        elif not _DNS_LABEL.match(name):
            errs.invalid(f"{path}.name", name, "a DNS-1035 label must consist of lower case "
                         "alphanumeric characters or '-'")
        elif name in seen:
            errs.duplicate(f"{path}.name", name)
        seen.add(name)
        storage += 1 if version.get("storage") is True else 0
        schema = as_dict(version.get("schema")).get("openAPIV3Schema")
        if schema is None:
            errs.required(f"{path}.schema.openAPIV3Schema", "schemas are required")
        else:
            where = f"{path}.schema.openAPIV3Schema"
            for cause in [*crd_schema.structural_errors(schema, where),
                          *crd_rules.compile_errors(schema, where)]:
                errs.add(cause.field, cause.message, cause.reason)
        _validate_subresources(as_dict(version.get("subresources")), f"{path}.subresources",
                               errs)
        for j, column in enumerate(as_list(version.get("additionalPrinterColumns"))):
            cpath = f"{path}.additionalPrinterColumns[{j}]"
            column = as_dict(column)
            if not column.get("name"):
                errs.required(f"{cpath}.name")
            if column.get("type") not in ("integer", "number", "string", "boolean", "date"):
                errs.not_supported(f"{cpath}.type", column.get("type"),
                                   ("boolean", "date", "integer", "number", "string"))
            if not as_str(column.get("jsonPath")):
                errs.required(f"{cpath}.jsonPath")
            elif _compile(as_str(column.get("jsonPath"))) is None:
                errs.invalid(f"{cpath}.jsonPath", column.get("jsonPath"),
                             "must be a simple json path")
    if versions and storage != 1:
        errs.invalid("spec.versions", storage,
                     "must have exactly one version marked as storage version")
    if spec.get("preserveUnknownFields") is True:
        errs.invalid("spec.preserveUnknownFields", True, "must be false in order to use "
                     "defaults in the schema")
    conversion = as_dict(spec.get("conversion"))
    strategy = conversion.get("strategy", "None")
    if strategy not in ("None", "Webhook"):
        errs.not_supported("spec.conversion.strategy", strategy, ("None", "Webhook"))
    _validate_conversion(conversion, strategy, errs)
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        if old_spec.get("group") != spec.get("group"):
            errs.immutable("spec.group", spec.get("group"))
        if old_spec.get("scope") != spec.get("scope"):
            errs.immutable("spec.scope", spec.get("scope"))
        if as_dict(old_spec.get("names")).get("plural") != plural:
            errs.immutable("spec.names.plural", plural)
    return errs.causes


def _validate_names(names: Obj, errs: FieldErrors) -> None:
    for key in ("plural", "singular"):
        value = names.get(key)
        if key == "plural" and not value:
            errs.required("spec.names.plural")
        elif value and (not isinstance(value, str) or not _DNS_LABEL.match(value)):
            errs.invalid(f"spec.names.{key}", value, "a lowercase RFC 1123 label must consist "
                         "of lower case alphanumeric characters or '-'")
    for key in ("kind", "listKind"):
        value = names.get(key)
        if key == "kind" and not value:
            errs.required("spec.names.kind")
        elif value and (not isinstance(value, str) or not _KIND.match(value)):
            errs.invalid(f"spec.names.{key}", value, "may have mixed case, but should "
                         "otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?$")
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.invalid("spec.names.listKind", names.get("listKind"), "kind and listKind may "
                     "not be the same")
    for key in ("shortNames", "categories"):
        for i, value in enumerate(as_list(names.get(key))):
            if not isinstance(value, str) or not _DNS_LABEL.match(value):
                errs.invalid(f"spec.names.{key}[{i}]", value, "a lowercase RFC 1123 label "
                             "must consist of lower case alphanumeric characters or '-'")


def _validate_conversion(conversion: Obj, strategy: Any, errs: FieldErrors) -> None:
    webhook = conversion.get("webhook")
    if strategy != "Webhook":
        if webhook is not None:
            errs.forbidden("spec.conversion.webhook",
                           "should not be set when strategy is not set to Webhook")
        return
    if not isinstance(webhook, dict):
        errs.required("spec.conversion.webhook", "required when strategy is set to Webhook")
        return
    config = as_dict(webhook.get("clientConfig"))
    if not config.get("url") and not config.get("service"):
        errs.required("spec.conversion.webhook.clientConfig",
                      "exactly one of url or service is required")
    elif config.get("url") and config.get("service"):
        errs.invalid("spec.conversion.webhook.clientConfig", "",
                     "exactly one of url or service is required")
    url = config.get("url")
    if isinstance(url, str) and url and not url.startswith("https://"):
        errs.invalid("spec.conversion.webhook.clientConfig.url", url,
                     "'https' is the only allowed URL scheme")
    versions = as_list(webhook.get("conversionReviewVersions"))
    if not versions:
        errs.required("spec.conversion.webhook.conversionReviewVersions",
                      "must include at least one of v1, v1beta1")


def _validate_subresources(subs: Obj, path: str, errs: FieldErrors) -> None:
    scale = subs.get("scale")
    if scale is None:
        return
    scale = as_dict(scale)
    for key in ("specReplicasPath", "statusReplicasPath"):
        value = as_str(scale.get(key))
        if not value:
            errs.required(f"{path}.scale.{key}")
        elif not value.startswith("."):
            errs.invalid(f"{path}.scale.{key}", value, "should be a json path under .spec"
                         if key.startswith("spec") else "should be a json path under .status")


# ------------------------------------------------------------------- resource types

def resource_types(crd: Obj) -> list[ResourceType]:
    """One resource type per served version, in version priority order."""
    spec = as_dict(crd.get("spec"))
    names = as_dict(spec.get("names"))
    group, kind = as_str(spec.get("group")), as_str(names.get("kind"))
    reversed_group = ".".join(reversed(group.split(".")))
    storage_version = next((as_str(v.get("name")) for v in as_list(spec.get("versions"))
                            if isinstance(v, dict) and v.get("storage")), "")
    conversion = json.dumps(as_dict(spec.get("conversion")) or {"strategy": "None"},
                            sort_keys=True)
    out = []
    for version in sorted((v for v in as_list(spec.get("versions")) if isinstance(v, dict)),
                          key=lambda v: version_priority(as_str(v.get("name")))):
        if not version.get("served"):
            continue
        name = as_str(version.get("name"))
        subs = as_dict(version.get("subresources"))
        scale = as_dict(subs.get("scale"))
        subresources: dict[str, str] = {}
        if "status" in subs:
            subresources["status"] = ""
        if "scale" in subs:
            subresources["scale"] = _SCALE
        selectable = [as_str(f.get("jsonPath")).lstrip(".") for f in
                      as_list(version.get("selectableFields")) if isinstance(f, dict)]
        warning = None
        if version.get("deprecated"):
            warning = version.get("deprecationWarning") or \
                f"{group}/{name} {kind} is deprecated"
        custom = CustomVersion(
            storage_version=storage_version, conversion=conversion,
            crd_name=as_str(as_dict(crd.get("metadata")).get("name")),
            schema=as_dict(as_dict(version.get("schema")).get("openAPIV3Schema")),
            storage=bool(version.get("storage")),
            printer=printer(as_list(version.get("additionalPrinterColumns"))),
            deprecation_warning=warning,
            scale={k: as_str(v) for k, v in scale.items() if isinstance(v, str)},
            has_status="status" in subs)
        out.append(ResourceType(
            group=group, version=name, kind=kind, plural=as_str(names.get("plural")),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(as_list(names.get("shortNames"))),
            categories=tuple(as_list(names.get("categories"))),
            subresources=subresources,
            schema_ref=f"{reversed_group}.{name}.{kind}",
            singular_name=as_str(names.get("singular")) or kind.lower(),
            list_kind_name=as_str(names.get("listKind")) or kind + "List",
            selectable_fields=selectable_paths(
                selectable, namespaced=spec.get("scope") == "Namespaced") if selectable
            else None,
            custom=custom))
    return out


def stored_alike(old: ResourceType, new: ResourceType) -> bool:
    """Whether `new` reads and writes the same stored objects as `old` does: the same
    version, kind and scope (so the same keys) and the same conversion. Schemas,
    printer columns, subresources and other versions may differ: watches on the version
    go on, as clients expect when a definition only gains a column or a field."""
    return (old.group, old.version, old.plural, old.kind, old.namespaced,
            old.custom.conversion) == (new.group, new.version, new.plural, new.kind,
                                       new.namespaced, new.custom.conversion)


# ------------------------------------------------------------------------------ status

def condition(kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": kind, "status": status, "lastTransitionTime": now, "reason": reason,
            "message": message}


def set_condition(status: Obj, new: Obj) -> None:
    """Put `new` in status.conditions, keeping lastTransitionTime when nothing changed."""
    conditions = [c for c in as_list(status.get("conditions")) if isinstance(c, dict)]
    for i, c in enumerate(conditions):
        if c.get("type") == new["type"]:
            if c.get("status") == new["status"]:
                new = {**new, "lastTransitionTime": c.get("lastTransitionTime")}
            conditions[i] = new
            break
    else:
        conditions.append(new)
    status["conditions"] = conditions


def accepted_status(crd: Obj, conflict: str, now: str) -> Obj:
    """The status of a definition once its names are judged: `conflict` is "" when they
    are free, else the message saying which name is taken."""
    spec = as_dict(crd.get("spec"))
    status = json.loads(json.dumps(as_dict(crd.get("status"))))
    if conflict:
        set_condition(status, condition("NamesAccepted", "False", "NameConflict",
                                        conflict, now))
        set_condition(status, condition("Established", "False", "NotAccepted",
                                        "not all names are accepted", now))
    else:
        status["acceptedNames"] = dict(as_dict(spec.get("names")))
        set_condition(status, condition("NamesAccepted", "True", "NoConflicts",
                                        "no conflicts found", now))
        set_condition(status, condition("Established", "True", "InitialNamesAccepted",
                                        "the initial names have been accepted", now))
    if as_dict(crd.get("metadata")).get("deletionTimestamp"):
        set_condition(status, condition("Terminating", "True", "InstanceDeletionInProgress",
                                        "CustomResource deletion is in progress", now))
    status.setdefault("acceptedNames", {"plural": "", "kind": ""})
    status["storedVersions"] = sorted(set(as_list(status.get("storedVersions"))) | {
        as_str(v.get("name")) for v in as_list(spec.get("versions"))
        if isinstance(v, dict) and v.get("storage")})
    return status


# ---------------------------------------------------------------------- printer columns

def printer(columns: list[Any]) -> Printer:
    """A table printer for `additionalPrinterColumns` (Name first; Age when none given),
    as apiextensions' table convertor builds it."""
    specs = [c for c in columns if isinstance(c, dict) and c.get("name") and
             c.get("jsonPath")]
    if not specs:
        specs = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    cols: tuple[Column, ...] = (name_column(), *(
        (as_str(c["name"]), as_str(c.get("type")) or "string", int(c.get("priority") or 0),
         as_str(c.get("description"))) for c in specs))
    paths = [(_compile(as_str(c["jsonPath"])), as_str(c.get("type"))) for c in specs]

    def cells(obj: Obj, now: datetime) -> Cells:
        out: Cells = [as_dict(obj.get("metadata")).get("name", "")]
        for path, type_ in paths:
            out.append(_cell(path, type_, obj, now))
        return out
    return Printer(cols, cells)


def _compile(path: str) -> Any:
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    try:
        return parse("$" + text if text.startswith((".", "[")) else "$." + text)
    except (JSONPathError, ValueError, TypeError):  # a bad path prints empty cells
        return None


def _cell(path: Any, type_: str, obj: Obj, now: datetime) -> Any:
    if path is None:
        return None
    try:
        found = [m.value for m in path.find(obj)]
    except Exception:
        return None
    if not found:
        return None
    value = found[0] if len(found) == 1 else found
    if type_ == "date" and isinstance(value, str):
        return since(value, now)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if type_ == "string" and not isinstance(value, str):
        return json.dumps(value)
    return value
