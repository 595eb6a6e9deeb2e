"""Validation of the core kinds that are not pods: Service, PersistentVolume and claim,
ConfigMap, Secret, Namespace, StorageClass, EndpointSlice.

One section per kind, its update rule next to its create rule: a Service keeps its
cluster IP; a PersistentVolume its source and volume mode; a claim may only grow its
storage request (and get its `volumeName` filled by the binder); ConfigMaps and Secrets
marked `immutable` keep their data, and a Secret keeps its type. `check_pvc_spec` is
shared with StatefulSet claim templates.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Any

from pinnace.api import schema
from pinnace.api.decoding import quantity_value
from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str, set_or_drop
from pinnace.api.names import (
    IANA_SVC_NAME,
    check_labels,
    check_selector,
    config_key_problems,
    label_problems,
    subdomain_problems,
)
from pinnace.api.validation_pods import PROTOCOLS, check_port_number

# --- Service -------------------------------------------------------------------------------------

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
NODE_PORT_RANGE = (30000, 32767)


def validate_service(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    svc_type = spec.get("type") or "ClusterIP"
    errs.enum("spec.type", svc_type, _SERVICE_TYPES)
    errs.enum("spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        errs.enum(f"spec.{key}", spec.get(key), ("Cluster", "Local"))
    ports = as_list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if svc_type == "ExternalName":
        external = as_str(spec.get("externalName"))
        if not external:
            errs.required("spec.externalName")
        else:
            for msg in subdomain_problems(external.rstrip(".")):
                errs.invalid("spec.externalName", external, msg)
    elif not ports and not headless:
        errs.required("spec.ports")
    names: set[str] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        path = f"spec.ports[{i}]"
        pname = as_str(port.get("name"))
        if len(ports) > 1 and not pname:
            errs.required(f"{path}.name")
        elif pname:
            for msg in label_problems(pname):
                errs.invalid(f"{path}.name", pname, msg)
            if pname in names:
                errs.duplicate(f"{path}.name", pname)
        names.add(pname)
        check_port_number(f"{path}.port", port.get("port"), errs)
        errs.enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
        target = port.get("targetPort")
        if isinstance(target, int):
            check_port_number(f"{path}.targetPort", target, errs)
        elif isinstance(target, str) and (len(target) > 15 or not IANA_SVC_NAME.match(target)):
            errs.invalid(f"{path}.targetPort", target,
                         "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
        node_port = port.get("nodePort")
        if node_port:
            if svc_type not in ("NodePort", "LoadBalancer"):
                errs.forbidden(f"{path}.nodePort",
                               f"may not be used when `type` is '{svc_type}'")
            elif not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
                errs.invalid(f"{path}.nodePort", node_port,
                             "provided port is not in the valid range. The range of valid "
                             f"ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
            if (node_port, port.get("protocol")) in node_ports:
                errs.duplicate(f"{path}.nodePort", node_port)
            node_ports.add((node_port, port.get("protocol")))
    check_labels(spec.get("selector"), "spec.selector", errs)


def validate_service_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return
    before, after = old_spec.get("clusterIP"), new_spec.get("clusterIP")
    if before and after and after != before:
        errs.immutable("spec.clusterIP", after)


# --- PersistentVolume and PersistentVolumeClaim --------------------------------------------------

_PV_SOURCES = tuple(sorted(
    set(schema.definition("io.k8s.api.core.v1.PersistentVolumeSpec")["properties"])
    - {"accessModes", "capacity", "claimRef", "mountOptions", "nodeAffinity",
       "persistentVolumeReclaimPolicy", "storageClassName", "volumeAttributesClassName",
       "volumeMode"}))
_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_VOLUME_MODES = ("Block", "Filesystem")


def _access_modes(modes: Any, path: str, errs: FieldErrors) -> None:
    if not as_list(modes):
        errs.required(path, "at least 1 access mode is required")
    for mode in as_list(modes):
        errs.enum(path, mode, _ACCESS_MODES)


def validate_pv(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    capacity = as_dict(spec.get("capacity"))
    if not capacity:
        errs.required("spec.capacity")
    elif "storage" not in capacity or len(capacity) > 1:
        errs.not_supported("spec.capacity", sorted(capacity), ("storage",))
    for key, value in capacity.items():
        if quantity_value(value) is None:
            errs.invalid(f"spec.capacity[{key}]", value, "must be a valid quantity")
    _access_modes(spec.get("accessModes"), "spec.accessModes", errs)
    errs.enum("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"),
              ("Delete", "Recycle", "Retain"))
    errs.enum("spec.volumeMode", spec.get("volumeMode"), _VOLUME_MODES)
    sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
    if not sources:
        errs.required("spec", "must specify a volume type")
    elif len(sources) > 1:
        errs.forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type")
    if spec.get("local") is not None and spec.get("nodeAffinity") is None:
        errs.required("spec.nodeAffinity", "Local volume requires node affinity")
    for key in ("nfs", "hostPath", "local"):
        src = as_dict(spec.get(key))
        if spec.get(key) is not None and not as_str(src.get("path")).startswith("/"):
            errs.invalid(f"spec.{key}.path", src.get("path"), "must be an absolute path")


def validate_pv_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if any(new_spec.get(s) != old_spec.get(s) for s in _PV_SOURCES):
        errs.forbidden("spec.persistentvolumesource",
                       "spec.persistentvolumesource is immutable after creation")
    if old_spec.get("volumeMode") and new_spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.immutable("spec.volumeMode", new_spec.get("volumeMode"))


def check_pvc_spec(spec: Any, path: str, errs: FieldErrors) -> None:
    spec = as_dict(spec)
    _access_modes(spec.get("accessModes"), f"{path}.accessModes", errs)
    requests = as_dict(as_dict(spec.get("resources")).get("requests"))
    storage = requests.get("storage")
    if storage is None:
        errs.required(f"{path}.resources[storage]")
    else:
        amount = quantity_value(storage)
        if amount is None:
            errs.invalid(f"{path}.resources.requests[storage]", storage,
                         "must be a valid quantity")
        elif amount <= 0:
            errs.invalid(f"{path}.resources.requests[storage]", storage,
                         "must be greater than zero")
    errs.enum(f"{path}.volumeMode", spec.get("volumeMode"), _VOLUME_MODES)
    if spec.get("selector") is not None:
        check_selector(spec.get("selector"), f"{path}.selector", errs)


def validate_pvc(obj: dict[str, Any], errs: FieldErrors) -> None:
    check_pvc_spec(obj.get("spec"), "spec", errs)


def validate_pvc_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    new_spec, old_spec = copy.deepcopy(as_dict(new.get("spec"))), as_dict(old.get("spec"))
    new_req = as_dict(as_dict(new_spec.get("resources")).get("requests"))
    old_req = as_dict(as_dict(old_spec.get("resources")).get("requests"))
    before, after = quantity_value(old_req.get("storage")), quantity_value(
        new_req.get("storage"))
    if before is not None and after is not None and after < before:
        errs.forbidden("spec.resources.requests.storage",
                       "field can not be less than previous value")
    # Expansion, and the binder filling volumeName of an unbound claim, are allowed.
    resources = as_dict(new_spec.get("resources"))
    if "requests" in resources or "requests" in as_dict(old_spec.get("resources")):
        set_or_drop(resources, "requests", as_dict(old_spec.get("resources")).get("requests"))
    set_or_drop(new_spec, "volumeAttributesClassName", old_spec.get("volumeAttributesClassName"))
    if not old_spec.get("volumeName"):
        set_or_drop(new_spec, "volumeName", old_spec.get("volumeName"))
    if old_spec.get("storageClassName") is None:  # the default class, assigned late
        set_or_drop(new_spec, "storageClassName", None)
    if new_spec != old_spec:
        errs.forbidden("spec", "spec is immutable after creation except resources.requests and "
                       "volumeAttributesClassName for bound claims")


# --- ConfigMap and Secret ------------------------------------------------------------------------

_MAX_DATA = 1024 * 1024


def _data_keys(obj: dict[str, Any], fields: tuple[str, ...], errs: FieldErrors) -> int:
    seen: set[str] = set()
    total = 0
    for field in fields:
        for key, value in as_dict(obj.get(field)).items():
            for msg in config_key_problems(key):
                errs.invalid(f"{field}[{key}]", key, msg)
            if key in seen:
                errs.invalid(f"{field}[{key}]", key, "duplicate of key present in data")
            seen.add(key)
            total += len(as_str(value))
    return total


def validate_configmap(obj: dict[str, Any], errs: FieldErrors) -> None:
    if _data_keys(obj, ("data", "binaryData"), errs) > _MAX_DATA:
        errs.too_long("", _MAX_DATA)


def validate_immutable_data_update(new: dict[str, Any], old: dict[str, Any],
                                   errs: FieldErrors) -> None:
    if not old.get("immutable"):
        return
    if not new.get("immutable"):
        errs.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in ("data", "binaryData"):
        if new.get(key) != old.get(key):
            errs.forbidden(key, "field is immutable when `immutable` is set")


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def validate_secret(obj: dict[str, Any], errs: FieldErrors) -> None:
    data = as_dict(obj.get("data"))
    size = 0
    for key, value in data.items():
        for msg in config_key_problems(key):
            errs.invalid(f"data[{key}]", key, msg)
        try:
            size += len(base64.b64decode(as_str(value).encode("ascii"), validate=True))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            errs.invalid(f"data[{key}]", "<secret contents redacted>",
                         "must be a base64-encoded string")
    if size > _MAX_DATA:
        errs.too_long("data", _MAX_DATA)
    secret_type = obj.get("type") or "Opaque"
    for key in _SECRET_REQUIRED_KEYS.get(secret_type, ()):
        if key not in data:
            errs.required(f"data[{key}]")
    if secret_type == "kubernetes.io/service-account-token":
        annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.required("metadata.annotations[kubernetes.io/service-account.name]")


def validate_secret_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    validate_immutable_data_update(new, old, errs)
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.immutable("type", new.get("type"))


# --- Namespace, StorageClass, EndpointSlice ------------------------------------------------------

def validate_namespace(obj: dict[str, Any], errs: FieldErrors) -> None:
    for i, fin in enumerate(as_list(as_dict(obj.get("spec")).get("finalizers"))):
        if "/" not in as_str(fin) and fin != "kubernetes":
            errs.invalid(f"spec.finalizers[{i}]", fin,
                         "name is neither a standard finalizer name nor is it fully qualified")


def validate_storageclass(obj: dict[str, Any], errs: FieldErrors) -> None:
    if not as_str(obj.get("provisioner")):
        errs.required("provisioner")
    errs.enum("reclaimPolicy", obj.get("reclaimPolicy"), ("Delete", "Retain"))
    errs.enum("volumeBindingMode", obj.get("volumeBindingMode"),
              ("Immediate", "WaitForFirstConsumer"))


def validate_endpointslice(obj: dict[str, Any], errs: FieldErrors) -> None:
    errs.enum("addressType", obj.get("addressType"), ("IPv4", "IPv6", "FQDN"))
    for i, port in enumerate(as_list(obj.get("ports"))):
        port = as_dict(port)
        check_port_number(f"ports[{i}].port", port.get("port"), errs)
        errs.enum(f"ports[{i}].protocol", port.get("protocol"), PROTOCOLS)
