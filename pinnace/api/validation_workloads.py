"""Validation of the workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob.

Every workload carries a selector and a pod template; the selector must be non-empty
and select the template's own labels (`_selector_and_template`), and the template is a
pod spec checked by `validation_pods` with the restart policies the kind allows. On top
come each kind's own fields: rollout strategies (int-or-percent surge/unavailable),
StatefulSet claim templates (checked as claims by `validation_core`), Job completion
modes and CronJob schedules.

Updates: the selector of a Deployment, ReplicaSet or DaemonSet is immutable; a
StatefulSet may change only the fields Kubernetes lists; a Job keeps its selector,
template and completion mode.
"""

from __future__ import annotations

import re
from typing import Any

from pinnace.api import cron
from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str
from pinnace.api.names import check_labels, check_selector
from pinnace.api.selectors import selector_matches
from pinnace.api.validation_core import check_pvc_spec
from pinnace.api.validation_pods import check_pod_template


def _selector_and_template(spec: dict[str, Any], kind: str, errs: FieldErrors, *,
                           required: bool = True) -> None:
    selector = spec.get("selector")
    labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
    if selector is None:
        if required:
            errs.required("spec.selector")
        return
    selector = as_dict(selector)
    check_selector(selector, "spec.selector", errs)
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", selector, f"empty selector is invalid for {kind}")
        return
    if not selector_matches(selector, labels):
        errs.invalid("spec.template.metadata.labels", labels,
                     "`selector` does not match template `labels`")


def _v_workload(obj: dict[str, Any], errs: FieldErrors, kind: str) -> None:
    spec = as_dict(obj.get("spec"))
    _selector_and_template(spec, kind, errs)
    claim_templates = frozenset(as_str(as_dict(as_dict(c).get("metadata")).get("name"))
                                for c in as_list(spec.get("volumeClaimTemplates"))) \
        if kind == "statefulset" else frozenset()
    check_pod_template(spec.get("template"), "spec.template", errs, restart_policies=("Always",),
                       claim_templates=claim_templates)
    errs.at_least("spec.replicas", spec.get("replicas"), 0)
    errs.at_least("spec.minReadySeconds", spec.get("minReadySeconds"), 0)
    errs.at_least("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"), 0)


def validate_deployment(obj: dict[str, Any], errs: FieldErrors) -> None:
    _v_workload(obj, errs, "deployment")
    spec = as_dict(obj.get("spec"))
    strategy = as_dict(spec.get("strategy"))
    errs.enum("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate"))
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
        errs.forbidden("spec.strategy.rollingUpdate",
                       "may not be specified when strategy `type` is 'Recreate'")
    rolling = as_dict(strategy.get("rollingUpdate"))
    for key in ("maxUnavailable", "maxSurge"):
        _int_or_percent(rolling.get(key), f"spec.strategy.rollingUpdate.{key}", errs)
    if _is_zero(rolling.get("maxUnavailable")) and _is_zero(rolling.get("maxSurge")):
        errs.invalid("spec.strategy.rollingUpdate.maxUnavailable", rolling["maxUnavailable"],
                     "may not be 0 when `maxSurge` is 0")
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
        errs.invalid("spec.progressDeadlineSeconds", deadline,
                     "must be greater than minReadySeconds")


def _is_zero(value: Any) -> bool:
    return value is not None and str(value).rstrip("%") in ("0",)


def _int_or_percent(value: Any, path: str, errs: FieldErrors) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            errs.invalid(path, value,
                         "a valid percent string must be a numeric string followed by an ending "
                         "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
        elif int(value[:-1]) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
    else:
        errs.at_least(path, value, 0)


def validate_replicaset(obj: dict[str, Any], errs: FieldErrors) -> None:
    _v_workload(obj, errs, "replicaset")


def validate_daemonset(obj: dict[str, Any], errs: FieldErrors) -> None:
    _v_workload(obj, errs, "daemonset")
    strategy = as_dict(as_dict(obj.get("spec")).get("updateStrategy"))
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    rolling = as_dict(strategy.get("rollingUpdate"))
    for key in ("maxUnavailable", "maxSurge"):
        _int_or_percent(rolling.get(key), f"spec.updateStrategy.rollingUpdate.{key}", errs)


def validate_statefulset(obj: dict[str, Any], errs: FieldErrors) -> None:
    _v_workload(obj, errs, "statefulset")
    spec = as_dict(obj.get("spec"))
    errs.enum("spec.podManagementPolicy", spec.get("podManagementPolicy"),
              ("OrderedReady", "Parallel"))
    strategy = as_dict(spec.get("updateStrategy"))
    errs.enum("spec.updateStrategy.type", strategy.get("type"), ("OnDelete", "RollingUpdate"))
    rolling = as_dict(strategy.get("rollingUpdate"))
    errs.at_least("spec.updateStrategy.rollingUpdate.partition", rolling.get("partition"), 0)
    path = "spec.updateStrategy.rollingUpdate.maxUnavailable"
    _int_or_percent(rolling.get("maxUnavailable"), path, errs)
    if _is_zero(rolling.get("maxUnavailable")):
        errs.invalid(path, rolling["maxUnavailable"], "must be greater than 0")
    for i, claim in enumerate(as_list(spec.get("volumeClaimTemplates"))):
        check_pvc_spec(as_dict(claim).get("spec"), f"spec.volumeClaimTemplates[{i}].spec", errs)


def _job_spec(spec: Any, path: str, errs: FieldErrors, *, generated_selector: bool) -> None:
    spec = as_dict(spec)
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs.at_least(f"{path}.{key}", spec.get(key), 0)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline < 1:
        errs.invalid(f"{path}.activeDeadlineSeconds", deadline,
                     "must be greater than or equal to 1")
    errs.enum(f"{path}.completionMode", spec.get("completionMode"), ("NonIndexed", "Indexed"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        errs.required(f"{path}.completions",
                      "when completion mode is Indexed")
    errs.enum(f"{path}.podReplacementPolicy", spec.get("podReplacementPolicy"),
              ("TerminatingOrFailed", "Failed"))
    check_pod_template(spec.get("template"), f"{path}.template", errs,
                       restart_policies=("OnFailure", "Never"))
    if generated_selector and spec.get("selector") is not None:
        check_selector(spec.get("selector"), f"{path}.selector", errs)


def validate_job(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    _job_spec(spec, "spec", errs, generated_selector=False)
    if spec.get("selector") is not None or spec.get("manualSelector"):
        _selector_and_template(spec, "job", errs)
    name = as_str(as_dict(obj.get("metadata")).get("name"))
    if len(name) > 63:
        # the job name becomes the value of the `job-name` label of its pods
        errs.invalid("metadata.name", name, "must be no more than 63 characters")


def validate_cronjob(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    schedule = as_str(spec.get("schedule"))
    if schedule:
        try:
            cron.parse(schedule)
        except ValueError as e:
            errs.invalid("spec.schedule", schedule, f"unparseable cron schedule: {e}")
    errs.enum("spec.concurrencyPolicy", spec.get("concurrencyPolicy"),
              ("Allow", "Forbid", "Replace"))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit",
                "startingDeadlineSeconds"):
        errs.at_least(f"spec.{key}", spec.get(key), 0)
    name = as_str(as_dict(obj.get("metadata")).get("name"))
    if len(name) > 52:
        errs.invalid("metadata.name", name, "must be no more than 52 characters")
    template = as_dict(spec.get("jobTemplate"))
    check_labels(as_dict(template.get("metadata")).get("labels"),
                 "spec.jobTemplate.metadata.labels", errs)
    _job_spec(template.get("spec"), "spec.jobTemplate.spec", errs, generated_selector=True)


# --- updates -------------------------------------------------------------------------------------

def validate_selector_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    before = as_dict(old.get("spec")).get("selector")
    after = as_dict(new.get("spec")).get("selector")
    if after != before:
        errs.immutable("spec.selector", after)


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_statefulset_update(new: dict[str, Any], old: dict[str, Any],
                                errs: FieldErrors) -> None:
    strip = lambda spec: {k: v for k, v in as_dict(spec).items() if k not in _STS_MUTABLE}  # noqa: E731
    if strip(new.get("spec")) != strip(old.get("spec")):
        errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                       "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                       "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                       "forbidden")


def validate_job_update(new: dict[str, Any], old: dict[str, Any], errs: FieldErrors) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    for key in ("selector", "template", "completionMode"):
        if new_spec.get(key) != old_spec.get(key):
            errs.immutable(f"spec.{key}", new_spec.get(key))
