"""Semantic validation of objects, as the API server's registry strategies do it.

The request path checks a body twice, in the order Kubernetes does on every create and
update:

1. typed decoding (`decoding.check_structure`, re-exported here): wrong JSON types are a
   400, unknown fields are pruned, rejected or warned about;
2. `validate`, after defaulting (`defaults.py`): the strategy's `Validate` and
   `ValidateUpdate`. Rules common to every kind run here (metadata: name format by kind,
   namespace, labels, annotations; the schema's `required` fields; immutable metadata on
   update), then the kind's own rules, looked up in two tables and written one module per
   area: `validation_pods`, `validation_workloads`, `validation_core`,
   `validation_admission`. All of them add to
   one `FieldErrors`, raised as one 422 Invalid with a `Cause` per problem.

Layers, lowest first (each imports only those before it): `field_errors`, `names`,
`validation_pods`, `validation_core`, `validation_workloads`, this module
(`validation_admission` imports `field_errors` and `cel` only).

Pure functions on JSON-like dicts; no I/O. Never raises anything but `ApiError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinnace.api import (
    schema,
    validation_admission,
    validation_core,
    validation_pods,
    validation_workloads,
)
from pinnace.api.decoding import check_structure, quantity_value
from pinnace.api.errors import INVALID, ApiError, Cause, bad_request, invalid
from pinnace.api.field_errors import NOT_FOUND, FieldErrors, as_dict, as_str
from pinnace.api.kinds import ResourceType
from pinnace.api.names import (
    check_annotations,
    check_labels,
    dns1035_problems,
    label_problems,
    path_segment_problems,
    subdomain_problems,
)
from pinnace.api.selectors import selector_matches
from pinnace.api.validation_core import NODE_PORT_RANGE

__all__ = [
    "NODE_PORT_RANGE",
    "NOT_FOUND",
    "check_structure",
    "quantity_value",
    "selector_matches",
    "validate",
]

# --- metadata ------------------------------------------------------------------------------------

_NAME_RULES = {
    "Namespace": label_problems,
    "Service": dns1035_problems,
    "Role": path_segment_problems, "RoleBinding": path_segment_problems,
    "ClusterRole": path_segment_problems, "ClusterRoleBinding": path_segment_problems,
}


def _meta(rt: ResourceType, meta: dict[str, Any], errs: FieldErrors) -> None:
    _object_meta(meta, errs, rt.namespaced, _NAME_RULES.get(rt.kind, subdomain_problems))


def object_meta_causes(obj: dict[str, Any], old: dict[str, Any] | None, *,
                       namespaced: bool) -> list[Cause]:
    """ObjectMeta checks alone (a DNS subdomain name, labels, annotations, immutable
    fields), for kinds whose body is judged elsewhere: custom resources."""
    errs = FieldErrors()
    meta = as_dict(obj.get("metadata"))
    _object_meta(meta, errs, namespaced, subdomain_problems)
    if isinstance(old, dict):
        _u_meta(meta, as_dict(old.get("metadata")), errs)
    return errs.causes


def _object_meta(meta: dict[str, Any], errs: FieldErrors, namespaced: bool,
                 name_rule: Callable[[str], list[str]]) -> None:
    name = as_str(meta.get("name"))
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        for msg in name_rule(name):
            errs.invalid("metadata.name", name, msg)
    namespace = meta.get("namespace")
    if namespaced and namespace:
        for msg in label_problems(as_str(namespace)):
            errs.invalid("metadata.namespace", namespace, msg)
    elif not namespaced and namespace:
        errs.forbidden("metadata.namespace", "not allowed on this type")
    check_labels(meta.get("labels"), "metadata.labels", errs)
    check_annotations(meta.get("annotations"), "metadata.annotations", errs)


def _u_meta(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        before, after = old.get(key), new.get(key)
        if before and after is not None and after != before:
            errs.immutable(f"metadata.{key}", after)


# --- the schema's `required` lists ---------------------------------------------------------------

_SKIP_REQUIRED = {"status", "managedFields"}


def _required_fields(value: Any, node: dict[str, Any] | None, path: str, errs: FieldErrors,
                     depth: int = 0) -> None:
    """Every `required` property of the schema along the object must be set."""
    resolved = schema.resolve(node) if node else None
    if resolved is None or depth > 64:
        return
    types = schema.types_of(resolved)
    if "array" in types and isinstance(value, list):
        for i, item in enumerate(value):
            _required_fields(item, resolved.get("items"), f"{path}[{i}]", errs, depth + 1)
        return
    if "object" not in types or not isinstance(value, dict):
        return
    props = resolved.get("properties")
    if not isinstance(props, dict):
        extra = resolved.get("additionalProperties")
        if isinstance(extra, dict):
            for key, sub in value.items():
                _required_fields(sub, extra, f"{path}[{key}]", errs, depth + 1)
        return
    for key in resolved.get("required") or ():
        if value.get(key) is None or value.get(key) == "":
            errs.required(f"{path}.{key}" if path else key)
    for key, sub in value.items():
        if key in props and key not in _SKIP_REQUIRED:
            _required_fields(sub, props[key], f"{path}.{key}" if path else key, errs, depth + 1)


# --- per kind ------------------------------------------------------------------------------------

_VALIDATORS: dict[str, Callable[[dict[str, Any], FieldErrors], None]] = {
    "Pod": validation_pods.validate_pod,
    "Deployment": validation_workloads.validate_deployment,
    "ReplicaSet": validation_workloads.validate_replicaset,
    "DaemonSet": validation_workloads.validate_daemonset,
    "StatefulSet": validation_workloads.validate_statefulset,
    "Job": validation_workloads.validate_job,
    "CronJob": validation_workloads.validate_cronjob,
    "Service": validation_core.validate_service,
    "PersistentVolume": validation_core.validate_pv,
    "PersistentVolumeClaim": validation_core.validate_pvc,
    "ConfigMap": validation_core.validate_configmap,
    "Secret": validation_core.validate_secret,
    "Namespace": validation_core.validate_namespace,
    "StorageClass": validation_core.validate_storageclass,
    "EndpointSlice": validation_core.validate_endpointslice,
    "ValidatingWebhookConfiguration": validation_admission.validate_validating_webhooks,
    "MutatingWebhookConfiguration": validation_admission.validate_mutating_webhooks,
    "ValidatingAdmissionPolicy": validation_admission.validate_policy,
    "ValidatingAdmissionPolicyBinding": validation_admission.validate_policy_binding,
}
_UPDATE_VALIDATORS: dict[str, Callable[[dict[str, Any], dict[str, Any], FieldErrors], None]] = {
    "Pod": validation_pods.validate_pod_update,
    "Deployment": validation_workloads.validate_selector_update,
    "ReplicaSet": validation_workloads.validate_selector_update,
    "DaemonSet": validation_workloads.validate_selector_update,
    "StatefulSet": validation_workloads.validate_statefulset_update,
    "Job": validation_workloads.validate_job_update,
    "PersistentVolumeClaim": validation_core.validate_pvc_update,
    "PersistentVolume": validation_core.validate_pv_update,
    "ConfigMap": validation_core.validate_immutable_data_update,
    "Secret": validation_core.validate_secret_update,
    "Service": validation_core.validate_service_update,
}


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Semantic validation of a (defaulted) object; `old` is the stored object on update.

    Raises a 422 Invalid `ApiError` with one `Cause` per problem.
    """
    errs = FieldErrors()
    try:
        if not isinstance(obj, dict):
            raise bad_request(f"the object provided is not a {rt.kind}")
        meta = as_dict(obj.get("metadata"))
        _meta(rt, meta, errs)
        if rt.schema_ref:
            # metadata is checked above and status is the system's; a placeholder keeps
            # kinds whose schema requires metadata (core/v1 Event) from failing here
            body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            body["metadata"] = {}
            _required_fields(body, {"$ref": "#/$defs/" + rt.schema_ref}, "", errs)
        check = _VALIDATORS.get(rt.kind)
        if check is not None:
            check(obj, errs)
        if isinstance(old, dict):
            _u_meta(meta, as_dict(old.get("metadata")), errs)
            check_update = _UPDATE_VALIDATORS.get(rt.kind)
            if check_update is not None:
                check_update(obj, old, errs)
    except ApiError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:
        # a shape check_structure would have refused; report rather than crash
        errs.add("", f"Invalid value: {e}", INVALID)
    if errs.causes:
        name = as_str(as_dict(obj.get("metadata")).get("name")) if isinstance(obj, dict) else ""
        raise invalid(rt.kind, name, errs.causes, group=rt.group)
