"""Server-side printing: `meta.k8s.io/v1 Table` replies for `kubectl get`.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints
whatever columns the server sends, hiding those with priority > 0 unless `-o wide`.
So the columns and cells here follow Kubernetes 1.32's printers
(`pkg/printers/internalversion/printers.go`) kind by kind: one `Printer` per
kind holds its column definitions and a pure function object -> cells. Like the
real API server, rows always carry the wide cells; kubectl picks.

Kinds without a printer get the API server's default table: Name and
"Created At" (type date). Time-relative cells (AGE, RESTARTS "(5m ago)", job
DURATION) are computed against `now`, which callers may pin for tests.

The printers live by area in `printers_workloads` and `printers_cluster`, on the shared
`Printer` type and helpers of `printing`; this module maps (group, kind) to a printer
and builds the Table and its rows.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from pinnace.api import printers_cluster as cluster
from pinnace.api import printers_workloads as workloads
from pinnace.api.printing import (
    META,
    Cells,
    Column,
    Obj,
    Printer,
    column_dicts,
    human_duration,
    metadata_of,
    name_column,
    parse_time,
)
from pinnace.api.timestamps import format_time

__all__ = [
    "Cells",
    "Column",
    "Obj",
    "column_definitions",
    "human_duration",
    "parse_time",
    "row",
    "table",
]

_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): workloads.POD,
    ("", "Service"): cluster.SERVICE,
    ("", "Endpoints"): cluster.ENDPOINTS,
    ("", "Node"): cluster.NODE,
    ("", "Namespace"): cluster.NAMESPACE,
    ("", "ConfigMap"): cluster.CONFIGMAP,
    ("", "Secret"): cluster.SECRET,
    ("", "ServiceAccount"): cluster.SERVICEACCOUNT,
    ("", "PersistentVolume"): cluster.PV,
    ("", "PersistentVolumeClaim"): cluster.PVC,
    ("", "Event"): cluster.EVENT,
    ("events.k8s.io", "Event"): cluster.EVENT,
    ("apps", "Deployment"): workloads.DEPLOYMENT,
    ("apps", "ReplicaSet"): workloads.REPLICASET,
    ("apps", "DaemonSet"): workloads.DAEMONSET,
    ("apps", "StatefulSet"): workloads.STATEFULSET,
    ("apps", "ControllerRevision"): workloads.CONTROLLERREVISION,
    ("batch", "Job"): workloads.JOB,
    ("batch", "CronJob"): workloads.CRONJOB,
    ("discovery.k8s.io", "EndpointSlice"): cluster.ENDPOINTSLICE,
    ("storage.k8s.io", "StorageClass"): cluster.STORAGECLASS,
    ("coordination.k8s.io", "Lease"): cluster.LEASE,
    ("rbac.authorization.k8s.io", "RoleBinding"): cluster.binding_printer("RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        cluster.binding_printer("ClusterRoleBinding"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        cluster.webhook_configuration_printer("ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        cluster.webhook_configuration_printer("MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): cluster.ADMISSION_POLICY,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"):
        cluster.ADMISSION_POLICY_BINDING,
}


# ---------------------------------------------------------------------------
# the API server's default table, for kinds without a printer


# The API server's default table (apiserver/pkg/registry/rest/table.go).
_DEFAULT_COLUMNS: tuple[Column, ...] = (
    name_column(), ("Created At", "date", 0, (META, "creationTimestamp")))


def _default_cells(obj: Obj, now: datetime) -> Cells:
    created = parse_time(metadata_of(obj).get("creationTimestamp"))
    text = format_time(created) if created else "0001-01-01T00:00:00Z"
    return [metadata_of(obj).get("name", ""), text]


_DEFAULT = Printer(_DEFAULT_COLUMNS, _default_cells)

# ---------------------------------------------------------------------------
# Table


@functools.cache
def _cached_definitions(kind: str, group: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    printer = _PRINTERS.get((group, kind), _DEFAULT)
    return tuple(tuple(d.items()) for d in column_dicts(printer.columns))


def column_definitions(kind: str, group: str, printer: Printer | None = None
                       ) -> list[dict[str, Any]]:
    """The `columnDefinitions` of a kind's Table, as Kubernetes 1.32 declares them
    (`printer`: a custom resource's, from its additionalPrinterColumns)."""
    if printer is not None:
        return column_dicts(printer.columns)
    return [dict(d) for d in _cached_definitions(kind, group)]


def row(kind: str, group: str, obj: Obj, *, include_object: str = "Metadata",
        now: datetime | None = None, printer: Printer | None = None) -> dict[str, Any]:
    """One `TableRow` for an object."""
    printer = printer or _PRINTERS.get((group, kind), _DEFAULT)
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"cells": printer.cells(obj, now)}
    conditions = printer.conditions(obj) if printer.conditions else []
    if conditions:
        out["conditions"] = conditions
    if include_object == "Object":
        out["object"] = obj
    elif include_object == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": dict(metadata_of(obj))}
    return out


def table(kind: str, group: str, objects: list[dict], *, include_object: str = "Metadata",
          resource_version: str = "", continue_token: str = "", now: datetime | None = None,
          include_headers: bool = True, printer: Printer | None = None) -> dict[str, Any]:
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
        "columnDefinitions": column_definitions(kind, group, printer) if include_headers
        else [],
        "rows": [row(kind, group, o, include_object=include_object, now=now, printer=printer)
                 for o in objects],
    }
