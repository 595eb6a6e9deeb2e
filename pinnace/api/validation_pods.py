"""Validation of pods and pod templates: containers, ports, env, mounts, volumes, policies.

`check_pod_spec` is shared by every kind that embeds a pod: Pod itself and, through
`check_pod_template`, the workloads, which narrow the allowed restart policies
(`Always` for Deployment and friends, `OnFailure`/`Never` for Job). Field paths are
relative to where the spec sits (`spec`, `spec.template.spec`,
`spec.jobTemplate.spec.template.spec`), as in Kubernetes' messages.

`validate_pod_update` follows Kubernetes' rule for pod updates: only container images,
`activeDeadlineSeconds` (shortened), added tolerations and a grace period of 1 after a
negative one may change; anything else is one Forbidden on `spec`.
"""

from __future__ import annotations

import copy
import ipaddress
from fractions import Fraction
from typing import Any

from pinnace.api import schema
from pinnace.api.decoding import quantity_value
from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str, render, set_or_drop
from pinnace.api.names import (
    IANA_SVC_NAME,
    check_annotations,
    check_labels,
    label_problems,
    subdomain_problems,
)

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
_VOLUME_SOURCES = tuple(sorted(
    set(schema.definition("io.k8s.api.core.v1.Volume")["properties"]) - {"name"}))
_ENV_NAME_MSG = ("a valid environment variable name must consist only of printable ASCII "
                 "characters other than '='")


def check_port_number(path: str, value: Any, errs: FieldErrors, low: int = 1) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= 65535:
        errs.invalid(path, value, f"must be between {low} and 65535, inclusive")


def _resources(res: Any, path: str, errs: FieldErrors) -> None:
    res = as_dict(res)
    parsed: dict[str, dict[str, Fraction]] = {}
    for part in ("limits", "requests"):
        parsed[part] = {}
        for name, value in as_dict(res.get(part)).items():
            amount = quantity_value(value)
            field = f"{path}.{part}[{name}]"
            if amount is None:
                errs.invalid(field, value, "must be a valid quantity")
            elif amount < 0:
                errs.invalid(field, value, "must be greater than or equal to 0")
            else:
                parsed[part][name] = amount
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            errs.invalid(f"{path}.requests", res["requests"][name],
                         f"must be less than or equal to {name} limit of "
                         f"{res['limits'][name]}")


def _container(ctr: dict[str, Any], path: str, volumes: set[str], errs: FieldErrors) -> None:
    name = as_str(ctr.get("name"))
    if not name:
        errs.required(f"{path}.name")
    else:
        for msg in label_problems(name):
            errs.invalid(f"{path}.name", name, msg)
    if not as_str(ctr.get("image")).strip():
        errs.required(f"{path}.image")
    errs.enum(f"{path}.imagePullPolicy", ctr.get("imagePullPolicy"), _PULL_POLICIES)
    errs.enum(f"{path}.terminationMessagePolicy", ctr.get("terminationMessagePolicy"),
              ("File", "FallbackToLogsOnError"))
    port_names: set[str] = set()
    for i, port in enumerate(as_list(ctr.get("ports"))):
        ppath = f"{path}.ports[{i}]"
        port = as_dict(port)
        if port.get("containerPort") is None:
            errs.required(f"{ppath}.containerPort")
        check_port_number(f"{ppath}.containerPort", port.get("containerPort"), errs)
        check_port_number(f"{ppath}.hostPort", port.get("hostPort"), errs, low=0)
        errs.enum(f"{ppath}.protocol", port.get("protocol"), PROTOCOLS)
        pname = as_str(port.get("name"))
        if pname:
            if len(pname) > 15 or not IANA_SVC_NAME.match(pname) or "--" in pname:
                errs.invalid(f"{ppath}.name", pname,
                             "must be no more than 15 characters and a valid IANA_SVC_NAME")
            elif pname in port_names:
                errs.duplicate(f"{ppath}.name", pname)
            port_names.add(pname)
    env_names: set[str] = set()
    for i, env in enumerate(as_list(ctr.get("env"))):
        env_name = as_str(as_dict(env).get("name"))
        if not env_name:
            errs.required(f"{path}.env[{i}].name")
        elif "=" in env_name or not env_name.isascii() or not env_name.isprintable():
            errs.invalid(f"{path}.env[{i}].name", env_name, _ENV_NAME_MSG)
        env_names.add(env_name)
    mount_paths: set[str] = set()
    for i, mount in enumerate(as_list(ctr.get("volumeMounts"))):
        mpath = f"{path}.volumeMounts[{i}]"
        mount = as_dict(mount)
        vname = as_str(mount.get("name"))
        if not vname:
            errs.required(f"{mpath}.name")
        elif vname not in volumes:
            errs.not_found(f"{mpath}.name", vname)
        target = as_str(mount.get("mountPath"))
        if not target:
            errs.required(f"{mpath}.mountPath")
        elif target in mount_paths:
            errs.invalid(f"{mpath}.mountPath", target, "must be unique")
        mount_paths.add(target)
    _resources(ctr.get("resources"), f"{path}.resources", errs)


def _volume(vol: dict[str, Any], path: str, errs: FieldErrors) -> None:
    sources = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
    if len(sources) > 1:
        errs.forbidden(f"{path}.{sources[1]}", "may not specify more than 1 volume type")
    for key in ("configMap", "secret"):
        for i, item in enumerate(as_list(as_dict(vol.get(key)).get("items"))):
            item_path = as_str(as_dict(item).get("path"))
            if item_path.startswith("/") or ".." in item_path.split("/"):
                errs.invalid(f"{path}.{key}.items[{i}].path", item_path,
                             "must be a relative path without '..'")
    host = vol.get("hostPath")
    if isinstance(host, dict):
        errs.enum(f"{path}.hostPath.type", host.get("type"),
                  ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice"))


def _dns_config(spec: dict[str, Any], path: str, errs: FieldErrors) -> None:
    """dnsConfig within the resolver's limits (3 nameservers, 32 search domains of 2048
    characters); with dnsPolicy None it is the whole configuration, so it must name a
    nameserver."""
    config = spec.get("dnsConfig")
    none = spec.get("dnsPolicy") == "None"
    if config is None:
        if none:
            errs.required(path, "must provide `dnsConfig` when `dnsPolicy` is None")
        return
    config = as_dict(config)
    servers = as_list(config.get("nameservers"))
    if none and not servers:
        errs.required(f"{path}.nameservers",
                      "must provide at least one DNS nameserver when `dnsPolicy` is None")
    if len(servers) > 3:
        errs.invalid(f"{path}.nameservers", servers, "must not have more than 3 nameservers")
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(as_str(server))
        except ValueError:
            errs.invalid(f"{path}.nameservers[{i}]", server,
                         "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    searches = [as_str(s) for s in as_list(config.get("searches"))]
    if len(searches) > 32:
        errs.invalid(f"{path}.searches", searches, "must not have more than 32 search paths")
    if len(" ".join(searches)) > 2048:
        errs.invalid(f"{path}.searches", searches, "must not have more than 2048 characters "
                     "(including spaces) in the search list")
    for i, search in enumerate(searches):
        if search == ".":
            continue  # allowed: "no search" for the resolver
        for msg in subdomain_problems(search.removesuffix(".")):
            errs.invalid(f"{path}.searches[{i}]", search, msg)
    for i, option in enumerate(as_list(config.get("options"))):
        if not as_str(as_dict(option).get("name")):
            errs.required(f"{path}.options[{i}]", "Option.Name must not be empty")


def check_pod_spec(spec: Any, path: str, errs: FieldErrors, *,
                   restart_policies: tuple[str, ...] = _RESTART_POLICIES,
                   claim_templates: frozenset[str] = frozenset()) -> None:
    """`claim_templates`: names a StatefulSet's pods get volumes of (its
    volumeClaimTemplates), which its template's volumeMounts may name."""
    spec = as_dict(spec)
    volumes: set[str] = set()
    for i, vol in enumerate(as_list(spec.get("volumes"))):
        vol = as_dict(vol)
        vname = as_str(vol.get("name"))
        vpath = f"{path}.volumes[{i}]"
        if not vname:
            errs.required(f"{vpath}.name")
        else:
            for msg in label_problems(vname):
                errs.invalid(f"{vpath}.name", vname, msg)
            if vname in volumes:
                errs.duplicate(f"{vpath}.name", vname)
        volumes.add(vname)
        _volume(vol, vpath, errs)
    containers = as_list(spec.get("containers"))
    if not containers:
        errs.required(f"{path}.containers")
    volumes |= claim_templates
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, ctr in enumerate(as_list(spec.get(field))):
            cpath = f"{path}.{field}[{i}]"
            ctr = as_dict(ctr)
            _container(ctr, cpath, volumes, errs)
            cname = as_str(ctr.get("name"))
            if cname in names:
                errs.duplicate(f"{cpath}.name", cname)
            names.add(cname)
    policy = spec.get("restartPolicy")
    if policy is None or policy == "":
        errs.required(f"{path}.restartPolicy", "valid values: " + ", ".join(
            render(p) for p in restart_policies))
    else:
        errs.enum(f"{path}.restartPolicy", policy, restart_policies)
    errs.enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), _DNS_POLICIES)
    _dns_config(spec, f"{path}.dnsConfig", errs)
    errs.enum(f"{path}.preemptionPolicy", spec.get("preemptionPolicy"),
              ("Never", "PreemptLowerPriority"))
    errs.at_least(f"{path}.terminationGracePeriodSeconds",
                  spec.get("terminationGracePeriodSeconds"), 0)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline < 1:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline,
                     "must be between 1 and 2147483647, inclusive")
    for key in ("serviceAccountName", "nodeName", "subdomain", "hostname"):
        value = spec.get(key)
        if value:
            problems = (label_problems if key in ("subdomain", "hostname")
                        else subdomain_problems)(as_str(value))
            for msg in problems:
                errs.invalid(f"{path}.{key}", value, msg)
    check_labels(spec.get("nodeSelector"), f"{path}.nodeSelector", errs)
    for i, tol in enumerate(as_list(spec.get("tolerations"))):
        tol = as_dict(tol)
        errs.enum(f"{path}.tolerations[{i}].operator", tol.get("operator"), ("Equal", "Exists"))
        errs.enum(f"{path}.tolerations[{i}].effect", tol.get("effect"),
                  ("", "NoExecute", "NoSchedule", "PreferNoSchedule"))
        if tol.get("operator") == "Exists" and tol.get("value"):
            errs.invalid(f"{path}.tolerations[{i}].operator", tol.get("value"),
                         "value must be empty when `operator` is 'Exists'")
        if not tol.get("key") and tol.get("operator") != "Exists":
            errs.invalid(f"{path}.tolerations[{i}].operator", tol.get("operator") or "",
                         "operator must be Exists when `key` is empty, which means \"match all "
                         "values and all keys\"")


def check_pod_template(template: Any, path: str, errs: FieldErrors, *,
                       restart_policies: tuple[str, ...] = _RESTART_POLICIES,
                       claim_templates: frozenset[str] = frozenset()) -> None:
    template = as_dict(template)
    meta = as_dict(template.get("metadata"))
    check_labels(meta.get("labels"), f"{path}.metadata.labels", errs)
    check_annotations(meta.get("annotations"), f"{path}.metadata.annotations", errs)
    check_pod_spec(template.get("spec"), f"{path}.spec", errs, restart_policies=restart_policies,
                   claim_templates=claim_templates)


def validate_pod(obj: dict[str, Any], errs: FieldErrors) -> None:
    check_pod_spec(obj.get("spec"), "spec", errs)


# --- updates -------------------------------------------------------------------------------------

_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def validate_pod_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    # Neutralize what may change, then any remaining difference is forbidden.
    mutated = copy.deepcopy(new_spec)
    for field in ("containers", "initContainers"):
        olds = as_list(old_spec.get(field))
        for i, ctr in enumerate(as_list(mutated.get(field))):
            if i < len(olds) and isinstance(ctr, dict) and ctr.get("image"):
                ctr["image"] = as_dict(olds[i]).get("image")
    before, after = old_spec.get("activeDeadlineSeconds"), new_spec.get("activeDeadlineSeconds")
    if after != before:
        if after is None or (before is not None and after > before):
            errs.invalid("spec.activeDeadlineSeconds", after,
                         "must be less than or equal to previous value")
        set_or_drop(mutated, "activeDeadlineSeconds", before)
    old_tolerations = as_list(old_spec.get("tolerations"))
    if all(t in as_list(new_spec.get("tolerations")) for t in old_tolerations):
        set_or_drop(mutated, "tolerations", old_spec.get("tolerations"))
    grace_before = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(grace_before, int) and grace_before < 0 and \
            new_spec.get("terminationGracePeriodSeconds") == 1:
        mutated["terminationGracePeriodSeconds"] = grace_before
    if mutated != old_spec:
        errs.forbidden("spec", _POD_UPDATE_MSG)
