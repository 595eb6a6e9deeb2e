"""Defaulting of objects: the values Kubernetes 1.32 fills in before it stores an object.

Kubernetes spreads these over three places, all run by the API server on create and
update: the generated `SetDefaults_*` functions of each API group
(`pkg/apis/*/v1/defaults.go`, which also run inside every embedded pod template),
the registry strategies (`PrepareForCreate`: status phases, the Job selector) and a
few admission plugins (ServiceAccount, Priority). pinnace gathers them here so an
object reads back exactly as kubectl would see it from a real cluster.

- `apply_defaults(rt, obj)` — the spec defaults, idempotent, safe on update too.
- `job_selector_defaults(obj)` — the Job selector and pod labels derived from the
  Job's uid; call it on create *after* the server has set `metadata.uid`.
- `initial_status(rt, obj)` — the status a new object starts with (create only).

All mutate in place; they never raise for odd shapes (validation reports those).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from pinnace.api import schema
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.api.validation import quantity_value

__all__ = ["apply_defaults", "initial_status", "job_selector_defaults", "qos_class"]


def _d(obj: Obj, key: str) -> Obj:
    """The dict at obj[key], created if missing; a non-dict is left alone (returns a dummy)."""
    value = obj.get(key)
    if value is None:
        value = obj[key] = {}
    return value if isinstance(value, dict) else {}


def _items(obj: Any, key: str) -> list[Obj]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _sub(obj: Any, *keys: str) -> Obj | None:
    """obj[k1][k2]... if every step is a dict, else None (nothing is created)."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else None


# --- pods -------------------------------------------------------------------------------

def _image_pull_policy(image: Any) -> str:
    """Always for `:latest` or no tag, else IfNotPresent (a digest counts as pinned)."""
    if not isinstance(image, str) or "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        probe.setdefault(key, value)
    http = _sub(probe, "httpGet")
    if http is not None:
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")
    grpc = _sub(probe, "grpc")
    if grpc is not None:
        grpc.setdefault("service", "")


def _container(ctr: Obj) -> None:
    ctr.setdefault("imagePullPolicy", _image_pull_policy(ctr.get("image")))
    ctr.setdefault("terminationMessagePath", "/dev/termination-log")
    ctr.setdefault("terminationMessagePolicy", "File")
    ctr.setdefault("resources", {})
    for port in _items(ctr, "ports"):
        port.setdefault("protocol", "TCP")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(ctr.get(key))
    for hook in ("postStart", "preStop"):
        http = _sub(ctr, "lifecycle", hook, "httpGet")
        if http is not None:
            http.setdefault("path", "/")
            http.setdefault("scheme", "HTTP")
    for env in _items(ctr, "env"):
        field_ref = _sub(env, "valueFrom", "fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
        resource_ref = _sub(env, "valueFrom", "resourceFieldRef")
        if resource_ref is not None:
            resource_ref.setdefault("divisor", "0")


_VOLUME_SOURCE_KEYS = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder",
                       "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "fc",
                       "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs",
                       "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim",
                       "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd",
                       "scaleIO", "secret", "storageos", "vsphereVolume")


def _volume(vol: Obj) -> None:
    if not any(vol.get(k) is not None for k in _VOLUME_SOURCE_KEYS):
        vol["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        src = _sub(vol, key)
        if src is not None:
            src.setdefault("defaultMode", 420)
    for item in _items(_sub(vol, "downwardAPI"), "items"):
        field_ref = _sub(item, "fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for source in _items(_sub(vol, "projected"), "sources"):
        for item in _items(_sub(source, "downwardAPI"), "items"):
            field_ref = _sub(item, "fieldRef")
            if field_ref is not None:
                field_ref.setdefault("apiVersion", "v1")
        token = _sub(source, "serviceAccountToken")
        if token is not None:
            token.setdefault("expirationSeconds", 3600)
    host = _sub(vol, "hostPath")
    if host is not None:
        host.setdefault("type", "")
    iscsi = _sub(vol, "iscsi")
    if iscsi is not None:
        iscsi.setdefault("iscsiInterface", "default")
    image = _sub(vol, "image")
    if image is not None:
        image.setdefault("pullPolicy", _image_pull_policy(image.get("reference")))


def _pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and below: runs for pods and for every pod template."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    host_network = spec.get("hostNetwork") is True
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for ctr in _items(spec, field):
            _container(ctr)
            if host_network:
                for port in _items(ctr, "ports"):
                    port.setdefault("hostPort", port.get("containerPort"))
    for vol in _items(spec, "volumes"):
        _volume(vol)
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]


def _template(template: Any) -> None:
    if isinstance(template, dict):
        _pod_spec(_d(template, "spec"))


def _pod(obj: Obj) -> None:
    spec = _d(obj, "spec")
    _pod_spec(spec)
    # SetDefaults_Pod: requests default to limits, per resource.
    for field in ("initContainers", "containers"):
        for ctr in _items(spec, field):
            limits = _sub(ctr, "resources", "limits")
            if limits:
                requests = _d(ctr["resources"], "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)
    spec.setdefault("enableServiceLinks", True)
    # ServiceAccount and Priority admission plugins (pods only, not templates).
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")


# --- workloads --------------------------------------------------------------------------

def _deployment(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _d(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        rolling = _d(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec.get("template"))


def _replicaset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    _template(spec.get("template"))


def _daemonset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    strategy = _d(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        rolling = _d(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(spec.get("template"))


def _statefulset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = _d(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        _d(strategy, "rollingUpdate").setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    retention = _d(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    for claim in _items(spec, "volumeClaimTemplates"):
        _pvc(claim)
    _template(spec.get("template"))


def _job(obj: Obj) -> None:
    spec = _d(obj, "spec")
    # Both unset: a non-parallel job, both 1. Parallelism alone: completions stays unset
    # (a work queue job).
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    failure_policy = _sub(spec, "podFailurePolicy")
    for rule in _items(failure_policy, "rules"):
        for pattern in _items(rule, "onPodConditions"):
            pattern.setdefault("status", "True")
    spec.setdefault("podReplacementPolicy",
                    "Failed" if failure_policy is not None else "TerminatingOrFailed")
    _copy_template_labels(obj)
    _template(spec.get("template"))


def _copy_template_labels(obj: Obj) -> None:
    """A Job without labels takes its pod template's labels (batch/v1 defaulting)."""
    labels = _sub(obj, "spec", "template", "metadata", "labels")
    meta = _d(obj, "metadata")
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)


def job_selector_defaults(obj: Obj) -> None:
    """Generate a Job's selector from its uid, unless `spec.manualSelector` is true.

    Call on create after `metadata.uid` is set and before validation: the selector
    `batch.kubernetes.io/controller-uid=<uid>` and the matching pod template labels
    (with the legacy `controller-uid` / `job-name` twins), as the Job strategy does.
    """
    meta = _d(obj, "metadata")
    spec = _d(obj, "spec")
    uid, name = meta.get("uid"), meta.get("name")
    if spec.get("manualSelector") is True or not uid:
        return
    template = _d(spec, "template")
    labels = _d(_d(template, "metadata"), "labels")
    labels.update({"batch.kubernetes.io/controller-uid": uid,
                   "batch.kubernetes.io/job-name": name or "",
                   "controller-uid": uid, "job-name": name or ""})
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    _copy_template_labels(obj)


def _cronjob(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    _template(_sub(spec, "jobTemplate", "spec", "template"))


# --- core objects -----------------------------------------------------------------------

def _service(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("type", "ClusterIP")
    svc_type = spec.get("type")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = _d(_d(spec, "sessionAffinityConfig"), "clientIP")
        client_ip.setdefault("timeoutSeconds", 10800)
    for port in _items(spec, "ports"):
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if svc_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if svc_type != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        # The IP family allocator's choice on a single-stack IPv4 cluster.
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])


def _pv(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    host = _sub(spec, "hostPath")
    if host is not None:
        host.setdefault("type", "")
    _d(obj, "status").setdefault("phase", "Pending")


def _pvc(obj: Obj) -> None:
    _d(obj, "spec").setdefault("volumeMode", "Filesystem")
    _d(obj, "status").setdefault("phase", "Pending")


def _secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _d(obj, "data")
        for key, value in string_data.items():
            text = value if isinstance(value, str) else ""
            data[key] = base64.b64encode(text.encode()).decode("ascii")


def _namespace(obj: Obj) -> None:
    meta = _d(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        _d(meta, "labels")["kubernetes.io/metadata.name"] = name
    spec = _d(obj, "spec")
    finalizers = spec.get("finalizers")
    if finalizers is None:
        spec["finalizers"] = ["kubernetes"]
    _d(obj, "status").setdefault("phase", "Active")


def _node(obj: Obj) -> None:
    status = _sub(obj, "status")
    if status is not None and status.get("capacity") and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])


def _endpoint_ports(ports: list[Obj]) -> None:
    for port in ports:
        port.setdefault("protocol", "TCP")


def _endpoints(obj: Obj) -> None:
    for subset in _items(obj, "subsets"):
        _endpoint_ports(_items(subset, "ports"))


def _endpointslice(obj: Obj) -> None:
    for port in _items(obj, "ports"):
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


def _storageclass(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _binding_subjects(obj: Obj) -> None:
    for subject in _items(obj, "subjects"):
        if subject.get("apiGroup") is None:
            kind = subject.get("kind")
            if kind in ("User", "Group"):
                subject["apiGroup"] = "rbac.authorization.k8s.io"
            elif kind == "ServiceAccount":
                subject["apiGroup"] = ""


def _match_resources(match: Any) -> None:
    """MatchResources and webhooks share these (admissionregistration/v1 defaults.go)."""
    if not isinstance(match, dict):
        return
    match.setdefault("matchPolicy", "Equivalent")
    match.setdefault("namespaceSelector", {})
    match.setdefault("objectSelector", {})
    for key in ("rules", "resourceRules", "excludeResourceRules"):
        for rule in _items(match, key):
            rule.setdefault("scope", "*")


def _webhooks(obj: Obj, *, mutating: bool) -> None:
    for hook in _items(obj, "webhooks"):
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        _match_resources(hook)
        service = _sub(hook, "clientConfig", "service")
        if service is not None:
            service.setdefault("port", 443)


def _admission_policy(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("failurePolicy", "Fail")
    _match_resources(spec.get("matchConstraints"))


def _admission_policy_binding(obj: Obj) -> None:
    _match_resources(_d(obj, "spec").get("matchResources"))


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "ValidatingWebhookConfiguration": lambda o: _webhooks(o, mutating=False),
    "MutatingWebhookConfiguration": lambda o: _webhooks(o, mutating=True),
    "ValidatingAdmissionPolicy": _admission_policy,
    "ValidatingAdmissionPolicyBinding": _admission_policy_binding,
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "DaemonSet": _daemonset,
    "StatefulSet": _statefulset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "PersistentVolume": _pv,
    "PersistentVolumeClaim": _pvc,
    "Secret": _secret,
    "Namespace": _namespace,
    "Node": _node,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpointslice,
    "StorageClass": _storageclass,
    "RoleBinding": _binding_subjects,
    "ClusterRoleBinding": _binding_subjects,
}


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """Fill in the defaults Kubernetes 1.32 sets for this kind (in place, idempotent)."""
    defaulter = _DEFAULTERS.get(rt.kind)
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)


# --- status on create -------------------------------------------------------------------

_QOS_RESOURCES = ("cpu", "memory")


def qos_class(spec: Obj) -> str:
    """A pod's QoS class from its containers' requests and limits (cpu and memory only)."""
    requests: dict[str, bool] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    containers = _items(spec, "containers") + _items(spec, "initContainers")
    for ctr in containers:
        ctr_requests = _sub(ctr, "resources", "requests") or {}
        ctr_limits = _sub(ctr, "resources", "limits") or {}
        for name in _QOS_RESOURCES:
            if _nonzero(ctr_requests.get(name)):
                requests[name] = True
            if _nonzero(ctr_limits.get(name)):
                limits[name] = limits.get(name, 0) + 1
        if not all(_nonzero(ctr_limits.get(n)) for n in _QOS_RESOURCES):
            guaranteed = False
        for name in _QOS_RESOURCES:
            request = ctr_requests.get(name)
            if request is not None and _amount(request) != _amount(ctr_limits.get(name)):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and containers:
        return "Guaranteed"
    return "Burstable"


def _amount(value: Any) -> Fraction | None:
    return quantity_value(value)


def _nonzero(value: Any) -> bool:
    amount = _amount(value)
    return amount is not None and amount != 0


def initial_status(rt: ResourceType, obj: Obj) -> None:
    """The status a new object starts with; call on create (it replaces the client's status)."""
    if not isinstance(obj, dict):
        return
    if rt.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(_d(obj, "spec"))}
    elif rt.kind in ("PersistentVolume", "PersistentVolumeClaim"):
        obj["status"] = {"phase": "Pending"}
    elif rt.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif rt.kind == "Service" and rt.group == "":
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif "status" not in obj:
        status_schema = _status_schema(rt)
        if status_schema is not None:
            # Go serialises a struct-typed status even when empty, with its non-omitempty
            # counters as 0 (DaemonSet's four, ReplicaSet's replicas): clients require them
            obj["status"] = {f: 0 for f in status_schema.get("required") or ()
                             if "integer" in schema.types_of(
                                 schema.resolve(status_schema["properties"][f]) or {})}


def _status_schema(rt: ResourceType) -> dict[str, Any] | None:
    node = schema.resolve(schema.definition(rt.schema_ref))
    status = (node.get("properties") or {}).get("status") if node else None
    return schema.resolve(status) if status else None
