"""Printers of pods and the workloads that run them: Pod, Deployment, ReplicaSet,
DaemonSet, StatefulSet, Job, CronJob, ControllerRevision.

Columns and cells follow Kubernetes 1.32's `pkg/printers/internalversion/printers.go`.
The pod's STATUS is the same walk kubectl users know: the phase, overridden by the first
unfinished init container ("Init:1/2", "Init:CrashLoopBackOff"), then by the containers'
waiting or terminated reasons, then "Terminating" while deleted; sidecars (init
containers with `restartPolicy: Always`) count in READY. The workloads share the wide
Containers/Images/Selector columns of their pod template.
"""

from __future__ import annotations

from datetime import datetime

from pinnace.api.conditions import is_true
from pinnace.api.errors import ApiError
from pinnace.api.printing import (
    AGE,
    CORE,
    Cells,
    Column,
    Obj,
    Printer,
    age,
    human_duration,
    metadata_of,
    name_column,
    nested,
    parse_time,
    since,
)
from pinnace.api.selectors import LabelSelector, format_label_selector, format_labels

_APPS = "io.k8s.api.apps.v1."
_BATCH = "io.k8s.api.batch.v1."
_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."
_READY_PODS = "Number of the pod with ready state"

# ---------------------------------------------------------------------------
# helpers


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


# ---------------------------------------------------------------------------
# Pod


def _pod_cells(pod: Obj, now: datetime) -> Cells:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    meta = metadata_of(pod)
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
        finished = parse_time(nested(cs, "lastState", "terminated", "finishedAt"))
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

    if not initializing or is_true(status.get("conditions"), "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_restart = _later(
                last_restart, parse_time(nested(cs, "lastState", "terminated", "finishedAt")))
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
            ready_cond = is_true(status.get("conditions"), "Ready")
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
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_text, age(pod, now),
            pod_ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates]


def _sidecar(container: Obj | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if b is None:
        return a
    return b if a is None or a < b else a


def _pod_conditions(pod: Obj) -> list[dict[str, str]]:
    phase = nested(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


POD = Printer((
    name_column(),
    ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", "string", 0, "The aggregate status of the containers in this pod."),
    ("Restarts", "string", 0, "The number of times the containers in this pod have been "
     "restarted and when the last container in this pod has restarted."),
    AGE,
    ("IP", "string", 1, (CORE + "PodStatus", "podIP")),
    ("Node", "string", 1, (CORE + "PodSpec", "nodeName")),
    ("Nominated Node", "string", 1, (CORE + "PodStatus", "nominatedNodeName")),
    ("Readiness Gates", "string", 1, (CORE + "PodSpec", "readinessGates")),
), _pod_cells, _pod_conditions)

# ---------------------------------------------------------------------------
# workloads


def _template_containers(obj: Obj, *path: str) -> tuple[str, str]:
    return _layout_containers(nested(obj, *path, "spec", "containers"))


def _deployment_cells(d: Obj, now: datetime) -> Cells:
    status = d.get("status") or {}
    desired = int(nested(d, "spec", "replicas", default=1))
    names, images = _template_containers(d, "spec", "template")
    return [metadata_of(d).get("name", ""), f"{int(status.get('readyReplicas') or 0)}/{desired}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            age(d, now), names, images, _selector_string(nested(d, "spec", "selector"))]


def _replicaset_cells(rs: Obj, now: datetime) -> Cells:
    status = rs.get("status") or {}
    names, images = _template_containers(rs, "spec", "template")
    return [metadata_of(rs).get("name", ""), int(nested(rs, "spec", "replicas", default=1)),
            int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0),
            age(rs, now), names, images, format_label_selector(nested(rs, "spec", "selector"))]


def _daemonset_cells(ds: Obj, now: datetime) -> Cells:
    status = ds.get("status") or {}
    names, images = _template_containers(ds, "spec", "template")
    counts = [int(status.get(f) or 0) for f in (
        "desiredNumberScheduled", "currentNumberScheduled", "numberReady",
        "updatedNumberScheduled", "numberAvailable")]
    return [metadata_of(ds).get("name", ""), *counts,
            format_labels(nested(ds, "spec", "template", "spec", "nodeSelector")), age(ds, now),
            names, images, format_label_selector(nested(ds, "spec", "selector"))]


def _statefulset_cells(sts: Obj, now: datetime) -> Cells:
    names, images = _template_containers(sts, "spec", "template")
    ready = int(nested(sts, "status", "readyReplicas", default=0))
    desired = int(nested(sts, "spec", "replicas", default=1))
    return [metadata_of(sts).get("name", ""), f"{ready}/{desired}", age(sts, now), names, images]


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
    if is_true(conds, "Complete"):
        state = "Complete"
    elif is_true(conds, "Failed"):
        state = "Failed"
    elif metadata_of(job).get("deletionTimestamp"):
        state = "Terminating"
    elif is_true(conds, "Suspended"):
        state = "Suspended"
    elif is_true(conds, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _template_containers(job, "spec", "template")
    return [metadata_of(job).get("name", ""), state, completions, duration, age(job, now),
            names, images, format_label_selector(spec.get("selector"))]


def _cronjob_cells(cj: Obj, now: datetime) -> Cells:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    names, images = _template_containers(cj, "spec", "jobTemplate", "spec", "template")
    return [metadata_of(cj).get("name", ""), spec.get("schedule", ""),
            spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"),
            len(status.get("active") or []), since(last, now) if last else "<none>",
            age(cj, now), names, images,
            format_label_selector(nested(spec, "jobTemplate", "spec", "selector"))]


def _controllerrevision_cells(cr: Obj, now: datetime) -> Cells:
    controller = "<none>"
    for ref in metadata_of(cr).get("ownerReferences") or []:
        if ref.get("controller"):
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = ref.get("kind", "")
            if kind or group:
                controller = f"{kind}.{group}".lower() if group else kind.lower()
                controller += "/" + ref.get("name", "")
            else:
                controller = ref.get("name", "")
            break
    return [metadata_of(cr).get("name", ""), controller, int(cr.get("revision") or 0), age(cr, now)]


_TEMPLATE_WIDE: tuple[Column, ...] = (
    ("Containers", "string", 1, _CONTAINERS), ("Images", "string", 1, _IMAGES))
DEPLOYMENT = Printer((
    name_column(), ("Ready", "string", 0, _READY_PODS),
    ("Up-to-date", "string", 0, (_APPS + "DeploymentStatus", "updatedReplicas")),
    ("Available", "string", 0, (_APPS + "DeploymentStatus", "availableReplicas")),
    AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "DeploymentSpec", "selector")),
), _deployment_cells)
REPLICASET = Printer((
    name_column(), ("Desired", "integer", 0, (_APPS + "ReplicaSetSpec", "replicas")),
    ("Current", "integer", 0, (_APPS + "ReplicaSetStatus", "replicas")),
    ("Ready", "integer", 0, (_APPS + "ReplicaSetStatus", "readyReplicas")),
    AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "ReplicaSetSpec", "selector")),
), _replicaset_cells)
DAEMONSET = Printer((
    name_column(), ("Desired", "integer", 0, (_APPS + "DaemonSetStatus", "desiredNumberScheduled")),
    ("Current", "integer", 0, (_APPS + "DaemonSetStatus", "currentNumberScheduled")),
    ("Ready", "integer", 0, (_APPS + "DaemonSetStatus", "numberReady")),
    ("Up-to-date", "integer", 0, (_APPS + "DaemonSetStatus", "updatedNumberScheduled")),
    ("Available", "integer", 0, (_APPS + "DaemonSetStatus", "numberAvailable")),
    ("Node Selector", "string", 0, (CORE + "PodSpec", "nodeSelector")),
    AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_APPS + "DaemonSetSpec", "selector")),
), _daemonset_cells)
STATEFULSET = Printer((
    name_column(), ("Ready", "string", 0, _READY_PODS), AGE, *_TEMPLATE_WIDE,
), _statefulset_cells)
JOB = Printer((
    name_column(), ("Status", "string", 0, "Status of the job."),
    ("Completions", "string", 0, (_BATCH + "JobStatus", "succeeded")),
    ("Duration", "string", 0, "Time required to complete the job."),
    AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_BATCH + "JobSpec", "selector")),
), _job_cells)
CRONJOB = Printer((
    name_column(), ("Schedule", "string", 0, (_BATCH + "CronJobSpec", "schedule")),
    ("Timezone", "string", 0, (_BATCH + "CronJobSpec", "timeZone")),
    ("Suspend", "boolean", 0, (_BATCH + "CronJobSpec", "suspend")),
    ("Active", "integer", 0, (_BATCH + "CronJobStatus", "active")),
    ("Last Schedule", "string", 0, (_BATCH + "CronJobStatus", "lastScheduleTime")),
    AGE, *_TEMPLATE_WIDE, ("Selector", "string", 1, (_BATCH + "JobSpec", "selector")),
), _cronjob_cells)
CONTROLLERREVISION = Printer((
    name_column(), ("Controller", "string", 0, "Controller of the object"),
    ("Revision", "string", 0, (_APPS + "ControllerRevision", "revision")), AGE,
), _controllerrevision_cells)
