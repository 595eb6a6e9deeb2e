"""Server-side printing: `meta.k8s.io/v1 Table` replies for `kubectl get`.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints
whatever columns the server sends, hiding those with priority > 0 unless `-o wide`.
So the columns and cells here follow Kubernetes 1.32's printers
(`pkg/printers/internalversion/printers.go`) kind by kind: one `_Printer` per
kind holds its column definitions and a pure function object -> cells. Like the
real API server, rows always carry the wide cells; kubectl picks.

Kinds without a printer get the API server's default table: Name and
"Created At" (type date). Time-relative cells (AGE, RESTARTS "(5m ago)", job
DURATION) are computed against `now`, which callers may pin for tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pinnace.api import schema
from pinnace.api.errors import ApiError
from pinnace.api.quantity import canonicalize
from pinnace.api.selectors import LabelSelector, format_label_selector, format_labels

Obj = Mapping[str, Any]
Cells = list[Any]

# ---------------------------------------------------------------------------
# time


def human_duration(seconds: float) -> str:
    """Kubernetes' `duration.HumanDuration`: "5s", "3m20s", "2d5h", "<invalid>"."""
    secs = int(seconds)  # Go truncates toward zero
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        s = secs % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (Time or MicroTime) as an aware datetime; None if absent."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _since(text: Any, now: datetime) -> str:
    t = parse_time(text)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


# ---------------------------------------------------------------------------
# column definitions


@functools.cache
def _doc(definition: str, field: str) -> str:
    node = schema.definition(definition) or {}
    prop = (node.get("properties") or {}).get(field) or {}
    return prop.get("description", "")


_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CORE, _APPS, _BATCH = "io.k8s.api.core.v1.", "io.k8s.api.apps.v1.", "io.k8s.api.batch.v1."
_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."
_READY_PODS = "Number of the pod with ready state"

# A column: (name, type, priority, description) where description is literal
# text or (definition, field) to read from the OpenAPI schema.
Column = tuple[str, str, int, str | tuple[str, str]]


def _name(priority: int = 0) -> Column:
    return ("Name", "string", priority, (_META, "name"))


_AGE: Column = ("Age", "string", 0, (_META, "creationTimestamp"))


def _definitions(columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    out = []
    for name, type_, priority, desc in columns:
        out.append({
            "name": name,
            "type": type_,
            "format": "name" if name == "Name" else "",
            "description": desc if isinstance(desc, str) else _doc(*desc),
            "priority": priority,
        })
    return out


@dataclass(frozen=True)
class _Printer:
    columns: tuple[Column, ...]
    cells: Callable[[Obj, datetime], Cells]
    conditions: Callable[[Obj], list[dict[str, str]]] | None = None


# ---------------------------------------------------------------------------
# helpers shared by printers


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(part)
    return default if obj is None else obj


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _age(obj: Obj, now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _layout_containers(containers: list[Obj] | None) -> tuple[str, str]:
    containers = containers or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _selector_string(sel: Obj | None) -> str:
    # `LabelSelectorAsSelector(...).String()`: nil and empty both print "".
    try:
        return str(LabelSelector.from_dict(sel))
    except ApiError:
        return "<invalid>"


def _quantity(value: Any) -> str:
    if value is None:
        return "0"
    try:
        return canonicalize(value)
    except ValueError:
        return str(value)


def _access_modes(modes: list[str] | None) -> str:
    modes = modes or []
    short = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
             ("ReadWriteOncePod", "RWOP"))
    return ",".join(s for mode, s in short if mode in modes)


def _condition_true(conditions: list[Obj] | None, type_: str) -> bool:
    for c in conditions or []:
        if c.get("type") == type_:
            return c.get("status") == "True"
    return False


# ---------------------------------------------------------------------------
# Pod


def _pod_cells(pod: Obj, now: datetime) -> Cells:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    meta = _meta(pod)
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(containers) + sum(1 for c in init_specs.values() if _sidecar(c))
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        count = int(cs.get("restartCount") or 0)
        restarts += count
        finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
        last_restart = _later(last_restart, finished)
        sidecar = _sidecar(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if not terminated.get("reason"):
                if terminated.get("signal"):
                    reason = f"Init:Signal:{terminated['signal']}"
                else:
                    reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
            else:
                reason = "Init:" + terminated["reason"]
        elif waiting is not None and waiting.get("reason") and \
                waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_restart = _later(
                last_restart, parse_time(_get(cs, "lastState", "terminated", "finishedAt")))
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = _condition_true(status.get("conditions"), "Ready")
            reason = "Running" if ready_cond else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        ago = human_duration((now - last_restart).total_seconds())
        restarts_text = f"{restarts} ({ago} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = "<none>"
    if spec.get("readinessGates"):
        conds = {c.get("type"): c.get("status") for c in reversed(status.get("conditions") or [])}
        true = sum(1 for g in spec["readinessGates"] if conds.get(g.get("conditionType")) == "True")
        gates = f"{true}/{len(spec['readinessGates'])}"
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            pod_ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates]


def _sidecar(container: Obj | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if b is None:
        return a
    return b if a is None or a < b else a


def _pod_conditions(pod: Obj) -> list[dict[str, str]]:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


_POD = _Printer((
    _name(),
    ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", "string", 0, "The aggregate status of the containers in this pod."),
    ("Restarts", "string", 0, "The number of times the containers in this pod have been "
     "restarted and when the last container in this pod has restarted."),
    _AGE,
    ("IP", "string", 1, (_CORE + "PodStatus", "podIP")),
    ("Node", "string", 1, (_CORE + "PodSpec", "nodeName")),
    ("Nominated Node", "string", 1, (_CORE + "PodStatus", "nominatedNodeName")),
    ("Readiness Gates", "string", 1, (_CORE + "PodSpec", "readinessGates")),
), _pod_cells, _pod_conditions)

# ---------------------------------------------------------------------------
# workloads


def _template_containers(obj: Obj, *path: str) -> tuple[str, str]:
    return _layout_containers(_get(obj, *path, "spec", "containers"))


def _deployment_cells(d: Obj, now: datetime) -> Cells:
    status = d.get("status") or {}
    desired = int(_get(d, "spec", "replicas", default=1))
    names, images = _template_containers(d, "spec", "template")
    return [_meta(d).get("name", ""), f"{int(status.get('readyReplicas') or 0)}/{desired}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            _age(d, now), names, images, _selector_string(_get(d, "spec", "selector"))]


def _replicaset_cells(rs: Obj, now: datetime) -> Cells:
    status = rs.get("status") or {}
    names, images = _template_containers(rs, "spec", "template")
    return [_meta(rs).get("name", ""), int(_get(rs, "spec", "replicas", default=1)),
            int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0),
            _age(rs, now), names, images, format_label_selector(_get(rs, "spec", "selector"))]


def _daemonset_cells(ds: Obj, now: datetime) -> Cells:
    status = ds.get("status") or {}
    names, images = _template_containers(ds, "spec", "template")
    counts = [int(status.get(f) or 0) for f in (
        "desiredNumberScheduled", "currentNumberScheduled", "numberReady",
        "updatedNumberScheduled", "numberAvailable")]
    return [_meta(ds).get("name", ""), *counts,
            format_labels(_get(ds, "spec", "template", "spec", "nodeSelector")), _age(ds, now),
            names, images, format_label_selector(_get(ds, "spec", "selector"))]


def _statefulset_cells(sts: Obj, now: datetime) -> Cells:
    names, images = _template_containers(sts, "spec", "template")
    ready = int(_get(sts, "status", "readyReplicas", default=0))
    desired = int(_get(sts, "spec", "replicas", default=1))
    return [_meta(sts).get("name", ""), f"{ready}/{desired}", _age(sts, now), names, images]


def _job_cells(job: Obj, now: datetime) -> Cells:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or now) - start).total_seconds())
    conds = status.get("conditions")
    if _condition_true(conds, "Complete"):
        state = "Complete"
    elif _condition_true(conds, "Failed"):
        state = "Failed"
    elif _meta(job).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conds, "Suspended"):
        state = "Suspended"
    elif _condition_true(conds, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _template_containers(job, "spec", "template")
    return [_meta(job).get("name", ""), state, completions, duration, _age(job, now),
            names, images, format_label_selector(spec.get("selector"))]


def _cronjob_cells(cj: Obj, now: datetime) -> Cells:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    names, images = _template_containers(cj, "spec", "jobTemplate", "spec", "template")
    return [_meta(cj).get("name", ""), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"),
            len(status.get("active") or []), _since(last, now) if last else "<none>",
            _age(cj, now), names, images,
            format_label_selector(_get(spec, "jobTemplate", "spec", "selector"))]


def _controllerrevision_cells(cr: Obj, now: datetime) -> Cells:
    controller = "<none>"
    for ref in _meta(cr).get("ownerReferences") or []:
        if ref.get("controller"):
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = ref.get("kind", "")
            if kind or group:
                controller = f"{kind}.{group}".lower() if group else kind.lower()
                controller += "/" + ref.get("name", "")
            else:
                controller = ref.get("name", "")
            break
    return [_meta(cr).get("name", ""), controller, int(cr.get("revision") or 0), _age(cr, now)]


_TEMPLATE_WIDE: tuple[Column, ...] = (
    ("Containers", "string", 1, _CONTAINERS), ("Images", "string", 1, _IMAGES))

_DEPLOYMENT = _Printer((
    _name(), ("Ready", "string", 0, _READY_PODS),
    ("Up-to-date", "string", 0, (_APPS + "DeploymentStatus", "updatedReplicas")),
    ("Available", "string", 0, (_APPS + "DeploymentStatus", "availableReplicas")),
    _AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "DeploymentSpec", "selector")),
), _deployment_cells)
_REPLICASET = _Printer((
    _name(), ("Desired", "integer", 0, (_APPS + "ReplicaSetSpec", "replicas")),
    ("Current", "integer", 0, (_APPS + "ReplicaSetStatus", "replicas")),
    ("Ready", "integer", 0, (_APPS + "ReplicaSetStatus", "readyReplicas")),
    _AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "ReplicaSetSpec", "selector")),
), _replicaset_cells)
_DAEMONSET = _Printer((
    _name(), ("Desired", "integer", 0, (_APPS + "DaemonSetStatus", "desiredNumberScheduled")),
    ("Current", "integer", 0, (_APPS + "DaemonSetStatus", "currentNumberScheduled")),
    ("Ready", "integer", 0, (_APPS + "DaemonSetStatus", "numberReady")),
    ("Up-to-date", "integer", 0, (_APPS + "DaemonSetStatus", "updatedNumberScheduled")),
    ("Available", "integer", 0, (_APPS + "DaemonSetStatus", "numberAvailable")),
    ("Node Selector", "string", 0, (_CORE + "PodSpec", "nodeSelector")),
    _AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "DaemonSetSpec", "selector")),
), _daemonset_cells)
_STATEFULSET = _Printer((
    _name(), ("Ready", "string", 0, _READY_PODS), _AGE, *_TEMPLATE_WIDE,
), _statefulset_cells)
_JOB = _Printer((
    _name(), ("Status", "string", 0, "Status of the job."),
    ("Completions", "string", 0, (_BATCH + "JobStatus", "succeeded")),
    ("Duration", "string", 0, "Time required to complete the job."),
    _AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_BATCH + "JobSpec", "selector")),
), _job_cells)
_CRONJOB = _Printer((
    _name(), ("Schedule", "string", 0, (_BATCH + "CronJobSpec", "schedule")),
    ("Timezone", "string", 0, (_BATCH + "CronJobSpec", "timeZone")),
    ("Suspend", "boolean", 0, (_BATCH + "CronJobSpec", "suspend")),
    ("Active", "integer", 0, (_BATCH + "CronJobStatus", "active")),
    ("Last Schedule", "string", 0, (_BATCH + "CronJobStatus", "lastScheduleTime")),
    _AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_BATCH + "JobSpec", "selector")),
), _cronjob_cells)
_CONTROLLERREVISION = _Printer((
    _name(), ("Controller", "string", 0, "Controller of the object"),
    ("Revision", "string", 0, (_APPS + "ControllerRevision", "revision")), _AGE,
), _controllerrevision_cells)

# ---------------------------------------------------------------------------
# networking


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = _get(svc, "status", "loadBalancer", "ingress", default=[])
        lb = ",".join(sorted({i.get("ip") or i.get("hostname") for i in ingress
                              if i.get("ip") or i.get("hostname")}))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: list[Obj] | None) -> str:
    pieces = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            pieces.append(f"{p.get('port')}/{proto}")
    return ",".join(pieces) or "<none>"


def _service_cells(svc: Obj, now: datetime) -> Cells:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_meta(svc).get("name", ""), spec.get("type") or "ClusterIP",
            ips[0] if ips else "<none>", _service_external_ip(svc),
            _service_ports(spec.get("ports")), _age(svc, now),
            format_labels(spec.get("selector"))]


def _join_host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _endpoints_text(subsets: list[Obj] | None) -> str:
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count, more, limit = 0, False, 3
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addresses)
            for a in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(a.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_join_host_port(a.get("ip", ""), port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _list_with_more(items: list[str], total: int, limit: int = 3) -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or "<unset>"


def _endpointslice_cells(es: Obj, now: datetime) -> Cells:
    ports = []
    for p in es.get("ports") or []:
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(p["name"])
        else:
            ports.append("*")
    addresses = [a for ep in es.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [_meta(es).get("name", ""), es.get("addressType", ""),
            _list_with_more(ports, len(ports)), _list_with_more(addresses, len(addresses)),
            _age(es, now)]


_SERVICE = _Printer((
    _name(), ("Type", "string", 0, (_CORE + "ServiceSpec", "type")),
    ("Cluster-IP", "string", 0, (_CORE + "ServiceSpec", "clusterIP")),
    ("External-IP", "string", 0, (_CORE + "ServiceSpec", "externalIPs")),
    ("Port(s)", "string", 0, (_CORE + "ServiceSpec", "ports")),
    _AGE, ("Selector", "string", 1, (_CORE + "ServiceSpec", "selector")),
), _service_cells)
_ENDPOINTS = _Printer((
    _name(), ("Endpoints", "string", 0, (_CORE + "Endpoints", "subsets")), _AGE,
), lambda ep, now: [_meta(ep).get("name", ""), _endpoints_text(ep.get("subsets")), _age(ep, now)])
_DISCOVERY = "io.k8s.api.discovery.v1.EndpointSlice"
_ENDPOINTSLICE = _Printer((
    _name(), ("AddressType", "string", 0, (_DISCOVERY, "addressType")),
    ("Ports", "string", 0, (_DISCOVERY, "ports")),
    ("Endpoints", "string", 0, (_DISCOVERY, "endpoints")), _AGE,
), _endpointslice_cells)

# ---------------------------------------------------------------------------
# cluster: nodes, namespaces, config, storage, rbac, leases, events


def _node_cells(node: Obj, now: datetime) -> Cells:
    status = node.get("status") or {}
    states = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    states = states or ["Unknown"]
    if _get(node, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)

    def address(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    info = status.get("nodeInfo") or {}
    return [_meta(node).get("name", ""), ",".join(states), ",".join(sorted(roles)) or "<none>",
            _age(node, now), info.get("kubeletVersion", ""), address("InternalIP"),
            address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _storage_class_of(obj: Obj) -> str:
    annotation = (_meta(obj).get("annotations") or {}).get(
        "volume.beta.kubernetes.io/storage-class")
    if annotation is not None:
        return annotation
    return _get(obj, "spec", "storageClassName", default="")


def _pv_cells(pv: Obj, now: datetime) -> Cells:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    phase = _get(pv, "status", "phase", default="")
    if _meta(pv).get("deletionTimestamp"):
        phase = "Terminating"
    return [_meta(pv).get("name", ""), _quantity(_get(spec, "capacity", "storage")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            phase, claim_text, _storage_class_of(pv),
            spec.get("volumeAttributesClassName") or "<unset>",
            _get(pv, "status", "reason", default=""), _age(pv, now),
            spec.get("volumeMode") or "<unset>"]


def _pvc_cells(pvc: Obj, now: datetime) -> Cells:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    phase = status.get("phase", "")
    if _meta(pvc).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _quantity(_get(status, "capacity", "storage"))
    return [_meta(pvc).get("name", ""), phase, spec.get("volumeName", ""), capacity, modes,
            _storage_class_of(pvc), spec.get("volumeAttributesClassName") or "<unset>",
            _age(pvc, now), spec.get("volumeMode") or "<unset>"]


def _storageclass_cells(sc: Obj, now: datetime) -> Cells:
    annotations = _meta(sc).get("annotations") or {}
    name = _meta(sc).get("name", "")
    if "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                  annotations.get("storageclass.beta.kubernetes.io/is-default-class")):
        name += " (default)"
    return [name, sc.get("provisioner", ""), sc.get("reclaimPolicy") or "Delete",
            sc.get("volumeBindingMode") or "Immediate", bool(sc.get("allowVolumeExpansion")),
            _age(sc, now)]


def _binding_cells(rb: Obj, now: datetime) -> Cells:
    users, groups, sas = [], [], []
    for s in rb.get("subjects") or []:
        if s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
    ref = rb.get("roleRef") or {}
    return [_meta(rb).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _age(rb, now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


def _event_cells(ev: Obj, now: datetime) -> Cells:
    # events.k8s.io/v1 names the same data differently; read either shape.
    first_ts = ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp")
    last_ts = ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp")
    first = _since(first_ts, now) if first_ts else _since(ev.get("eventTime"), now)
    last = _since(last_ts, now) if last_ts else first
    count = ev.get("count") or ev.get("deprecatedCount") or 0
    series = ev.get("series")
    if series:
        last = _since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif not count:
        count = 1  # singleton events of the new API carry no count
    involved = ev.get("involvedObject") or ev.get("regarding") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or ev.get("deprecatedSource") or {}
    component = source.get("component") or ev.get("reportingComponent") or \
        ev.get("reportingController") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    source_text = f"{component}, {instance}" if instance else component
    message = (ev.get("message") if "message" in ev else ev.get("note")) or ""
    return [last, ev.get("type", ""), ev.get("reason", ""), target,
            involved.get("fieldPath", ""), source_text, message.strip(), first, int(count),
            _meta(ev).get("name", "")]


_NODE = _Printer((
    _name(), ("Status", "string", 0, "The status of the node"),
    ("Roles", "string", 0, "The roles of the node"), _AGE,
    ("Version", "string", 0, (_CORE + "NodeSystemInfo", "kubeletVersion")),
    ("Internal-IP", "string", 1, (_CORE + "NodeStatus", "addresses")),
    ("External-IP", "string", 1, (_CORE + "NodeStatus", "addresses")),
    ("OS-Image", "string", 1, (_CORE + "NodeSystemInfo", "osImage")),
    ("Kernel-Version", "string", 1, (_CORE + "NodeSystemInfo", "kernelVersion")),
    ("Container-Runtime", "string", 1, (_CORE + "NodeSystemInfo", "containerRuntimeVersion")),
), _node_cells)
_NAMESPACE = _Printer((
    _name(), ("Status", "string", 0, "The status of the namespace"), _AGE,
), lambda ns, now: [_meta(ns).get("name", ""), _get(ns, "status", "phase", default=""),
                    _age(ns, now)])
_CONFIGMAP = _Printer((
    _name(), ("Data", "string", 0, (_CORE + "ConfigMap", "data")), _AGE,
), lambda cm, now: [_meta(cm).get("name", ""),
                    len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), _age(cm, now)])
_SECRET = _Printer((
    _name(), ("Type", "string", 0, (_CORE + "Secret", "type")),
    ("Data", "string", 0, (_CORE + "Secret", "data")), _AGE,
), lambda s, now: [_meta(s).get("name", ""), s.get("type", ""), len(s.get("data") or {}),
                   _age(s, now)])
_SERVICEACCOUNT = _Printer((
    _name(), ("Secrets", "string", 0, (_CORE + "ServiceAccount", "secrets")), _AGE,
), lambda sa, now: [_meta(sa).get("name", ""), len(sa.get("secrets") or []), _age(sa, now)])
_PV = _Printer((
    _name(), ("Capacity", "string", 0, (_CORE + "PersistentVolumeSpec", "capacity")),
    ("Access Modes", "string", 0, (_CORE + "PersistentVolumeSpec", "accessModes")),
    ("Reclaim Policy", "string", 0,
     (_CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
    ("Status", "string", 0, (_CORE + "PersistentVolumeStatus", "phase")),
    ("Claim", "string", 0, (_CORE + "PersistentVolumeSpec", "claimRef")),
    ("StorageClass", "string", 0, "StorageClass of the pv"),
    ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
    ("Reason", "string", 0, (_CORE + "PersistentVolumeStatus", "reason")),
    _AGE, ("VolumeMode", "string", 1, (_CORE + "PersistentVolumeSpec", "volumeMode")),
), _pv_cells)
_PVC = _Printer((
    _name(), ("Status", "string", 0, (_CORE + "PersistentVolumeClaimStatus", "phase")),
    ("Volume", "string", 0, (_CORE + "PersistentVolumeClaimSpec", "volumeName")),
    ("Capacity", "string", 0, (_CORE + "PersistentVolumeClaimStatus", "capacity")),
    ("Access Modes", "string", 0, (_CORE + "PersistentVolumeClaimStatus", "accessModes")),
    ("StorageClass", "string", 0, "StorageClass of the pvc"),
    ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
    _AGE, ("VolumeMode", "string", 1, (_CORE + "PersistentVolumeClaimSpec", "volumeMode")),
), _pvc_cells)
_SC = "io.k8s.api.storage.v1.StorageClass"
_STORAGECLASS = _Printer((
    _name(), ("Provisioner", "string", 0, (_SC, "provisioner")),
    ("ReclaimPolicy", "string", 0, (_SC, "reclaimPolicy")),
    ("VolumeBindingMode", "string", 0, (_SC, "volumeBindingMode")),
    ("AllowVolumeExpansion", "string", 0, (_SC, "allowVolumeExpansion")), _AGE,
), _storageclass_cells)
_LEASE = _Printer((
    _name(), ("Holder", "string", 0, ("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
    _AGE,
), lambda le, now: [_meta(le).get("name", ""), _get(le, "spec", "holderIdentity", default=""),
                    _age(le, now)])


def _binding_printer(what: str) -> _Printer:
    return _Printer((
        _name(), ("Role", "string", 0, (f"io.k8s.api.rbac.v1.{what}", "roleRef")), _AGE,
        ("Users", "string", 1, f"Users in the {what[0].lower() + what[1:]}"),
        ("Groups", "string", 1, f"Groups in the {what[0].lower() + what[1:]}"),
        ("ServiceAccounts", "string", 1, f"ServiceAccounts in the {what[0].lower() + what[1:]}"),
    ), _binding_cells)


_EVENT = _Printer((
    ("Last Seen", "string", 0, (_CORE + "Event", "lastTimestamp")),
    ("Type", "string", 0, (_CORE + "Event", "type")),
    ("Reason", "string", 0, (_CORE + "Event", "reason")),
    ("Object", "string", 0, (_CORE + "Event", "involvedObject")),
    ("Subobject", "string", 1, (_CORE + "ObjectReference", "fieldPath")),
    ("Source", "string", 1, (_CORE + "Event", "source")),
    ("Message", "string", 0, (_CORE + "Event", "message")),
    ("First Seen", "string", 1, (_CORE + "Event", "firstTimestamp")),
    ("Count", "string", 1, (_CORE + "Event", "count")),
    _name(priority=1),
), _event_cells)

_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): _POD,
    ("", "Service"): _SERVICE,
    ("", "Endpoints"): _ENDPOINTS,
    ("", "Node"): _NODE,
    ("", "Namespace"): _NAMESPACE,
    ("", "ConfigMap"): _CONFIGMAP,
    ("", "Secret"): _SECRET,
    ("", "ServiceAccount"): _SERVICEACCOUNT,
    ("", "PersistentVolume"): _PV,
    ("", "PersistentVolumeClaim"): _PVC,
    ("", "Event"): _EVENT,
    ("events.k8s.io", "Event"): _EVENT,
    ("apps", "Deployment"): _DEPLOYMENT,
    ("apps", "ReplicaSet"): _REPLICASET,
    ("apps", "DaemonSet"): _DAEMONSET,
    ("apps", "StatefulSet"): _STATEFULSET,
    ("apps", "ControllerRevision"): _CONTROLLERREVISION,
    ("batch", "Job"): _JOB,
    ("batch", "CronJob"): _CRONJOB,
    ("discovery.k8s.io", "EndpointSlice"): _ENDPOINTSLICE,
    ("storage.k8s.io", "StorageClass"): _STORAGECLASS,
    ("coordination.k8s.io", "Lease"): _LEASE,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding_printer("RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding_printer("ClusterRoleBinding"),
}

# The API server's default table (apiserver/pkg/registry/rest/table.go).
_DEFAULT_COLUMNS: tuple[Column, ...] = (
    _name(), ("Created At", "date", 0, (_META, "creationTimestamp")))


def _default_cells(obj: Obj, now: datetime) -> Cells:
    created = parse_time(_meta(obj).get("creationTimestamp"))
    text = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else \
        "0001-01-01T00:00:00Z"
    return [_meta(obj).get("name", ""), text]


_DEFAULT = _Printer(_DEFAULT_COLUMNS, _default_cells)


@functools.cache
def _cached_definitions(kind: str, group: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    printer = _PRINTERS.get((group, kind), _DEFAULT)
    return tuple(tuple(d.items()) for d in _definitions(printer.columns))


def column_definitions(kind: str, group: str) -> list[dict[str, Any]]:
    """The `columnDefinitions` of a kind's Table, as Kubernetes 1.32 declares them."""
    return [dict(d) for d in _cached_definitions(kind, group)]


def row(kind: str, group: str, obj: Obj, *, include_object: str = "Metadata",
        now: datetime | None = None) -> dict[str, Any]:
    """One `TableRow` for an object."""
    printer = _PRINTERS.get((group, kind), _DEFAULT)
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"cells": printer.cells(obj, now)}
    conditions = printer.conditions(obj) if printer.conditions else []
    if conditions:
        out["conditions"] = conditions
    if include_object == "Object":
        out["object"] = obj
    elif include_object == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": dict(_meta(obj))}
    return out


def table(kind: str, group: str, objects: list[dict], *, include_object: str = "Metadata",
          resource_version: str = "", continue_token: str = "", now: datetime | None = None,
          include_headers: bool = True) -> dict[str, Any]:
    """A `meta.k8s.io/v1 Table` of objects of one kind.

    include_object is the request's `includeObject` (None, Metadata, Object);
    include_headers=False (TableOptions.noHeaders) leaves columnDefinitions empty,
    as for watch events after the first.
    """
    now = now or datetime.now(UTC)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(kind, group) if include_headers else [],
        "rows": [row(kind, group, o, include_object=include_object, now=now) for o in objects],
    }
