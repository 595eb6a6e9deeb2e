"""Printers of everything around the workloads: Services and their endpoints, Nodes,
Namespaces, ConfigMaps, Secrets, ServiceAccounts, PersistentVolumes and claims,
StorageClasses, RBAC bindings, Leases, Events.

Columns and cells follow Kubernetes 1.32's `pkg/printers/internalversion/printers.go`:
a Service's EXTERNAL-IP from its type and load-balancer status, endpoints shown three at
a time with "+ N more...", storage quantities in canonical form and access modes
abbreviated (RWO, ROX, RWX, RWOP). Events print either shape, core/v1 or events.k8s.io/v1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pinnace.api.printing import (
    AGE,
    CORE,
    Cells,
    Obj,
    Printer,
    age,
    metadata_of,
    name_column,
    nested,
    since,
)
from pinnace.api.quantity import canonicalize
from pinnace.api.selectors import format_labels


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

# ---------------------------------------------------------------------------
# networking


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = nested(svc, "status", "loadBalancer", "ingress", default=[])
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
    return [metadata_of(svc).get("name", ""), spec.get("type") or "ClusterIP",
            ips[0] if ips else "<none>", _service_external_ip(svc),
            _service_ports(spec.get("ports")), age(svc, now),
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
    return [metadata_of(es).get("name", ""), es.get("addressType", ""),
            _list_with_more(ports, len(ports)), _list_with_more(addresses, len(addresses)),
            age(es, now)]


SERVICE = Printer((
    name_column(), ("Type", "string", 0, (CORE + "ServiceSpec", "type")),
    ("Cluster-IP", "string", 0, (CORE + "ServiceSpec", "clusterIP")),
    ("External-IP", "string", 0, (CORE + "ServiceSpec", "externalIPs")),
    ("Port(s)", "string", 0, (CORE + "ServiceSpec", "ports")),
    AGE, ("Selector", "string", 1, (CORE + "ServiceSpec", "selector")),
), _service_cells)
ENDPOINTS = Printer((
    name_column(), ("Endpoints", "string", 0, (CORE + "Endpoints", "subsets")), AGE,
), lambda ep, now: [metadata_of(ep).get("name", ""), _endpoints_text(ep.get("subsets")),
                    age(ep, now)])
_DISCOVERY = "io.k8s.api.discovery.v1.EndpointSlice"
ENDPOINTSLICE = Printer((
    name_column(), ("AddressType", "string", 0, (_DISCOVERY, "addressType")),
    ("Ports", "string", 0, (_DISCOVERY, "ports")),
    ("Endpoints", "string", 0, (_DISCOVERY, "endpoints")), AGE,
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
    if nested(node, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (metadata_of(node).get("labels") or {}).items():
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
    return [metadata_of(node).get("name", ""), ",".join(states),
            ",".join(sorted(roles)) or "<none>", age(node, now), info.get("kubeletVersion", ""),
            address("InternalIP"),
            address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _storage_class_of(obj: Obj) -> str:
    annotation = (metadata_of(obj).get("annotations") or {}).get(
        "volume.beta.kubernetes.io/storage-class")
    if annotation is not None:
        return annotation
    return nested(obj, "spec", "storageClassName", default="")


def _pv_cells(pv: Obj, now: datetime) -> Cells:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    phase = nested(pv, "status", "phase", default="")
    if metadata_of(pv).get("deletionTimestamp"):
        phase = "Terminating"
    return [metadata_of(pv).get("name", ""), _quantity(nested(spec, "capacity", "storage")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            phase, claim_text, _storage_class_of(pv),
            spec.get("volumeAttributesClassName") or "<unset>",
            nested(pv, "status", "reason", default=""), age(pv, now),
            spec.get("volumeMode") or "<unset>"]


def _pvc_cells(pvc: Obj, now: datetime) -> Cells:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    phase = status.get("phase", "")
    if metadata_of(pvc).get("deletionTimestamp"):
        phase = "Terminating"
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _quantity(nested(status, "capacity", "storage"))
    return [metadata_of(pvc).get("name", ""), phase, spec.get("volumeName", ""), capacity, modes,
            _storage_class_of(pvc), spec.get("volumeAttributesClassName") or "<unset>",
            age(pvc, now), spec.get("volumeMode") or "<unset>"]


def _storageclass_cells(sc: Obj, now: datetime) -> Cells:
    annotations = metadata_of(sc).get("annotations") or {}
    name = metadata_of(sc).get("name", "")
    if "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                  annotations.get("storageclass.beta.kubernetes.io/is-default-class")):
        name += " (default)"
    return [name, sc.get("provisioner", ""), sc.get("reclaimPolicy") or "Delete",
            sc.get("volumeBindingMode") or "Immediate", bool(sc.get("allowVolumeExpansion")),
            age(sc, now)]


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
    return [metadata_of(rb).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            age(rb, now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


def _event_cells(ev: Obj, now: datetime) -> Cells:
    # events.k8s.io/v1 names the same data differently; read either shape.
    first_ts = ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp")
    last_ts = ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp")
    first = since(first_ts, now) if first_ts else since(ev.get("eventTime"), now)
    last = since(last_ts, now) if last_ts else first
    count = ev.get("count") or ev.get("deprecatedCount") or 0
    series = ev.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now)
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
            metadata_of(ev).get("name", "")]


NODE = Printer((
    name_column(), ("Status", "string", 0, "The status of the node"),
    ("Roles", "string", 0, "The roles of the node"), AGE,
    ("Version", "string", 0, (CORE + "NodeSystemInfo", "kubeletVersion")),
    ("Internal-IP", "string", 1, (CORE + "NodeStatus", "addresses")),
    ("External-IP", "string", 1, (CORE + "NodeStatus", "addresses")),
    ("OS-Image", "string", 1, (CORE + "NodeSystemInfo", "osImage")),
    ("Kernel-Version", "string", 1, (CORE + "NodeSystemInfo", "kernelVersion")),
    ("Container-Runtime", "string", 1, (CORE + "NodeSystemInfo", "containerRuntimeVersion")),
), _node_cells)
NAMESPACE = Printer((
    name_column(), ("Status", "string", 0, "The status of the namespace"), AGE,
), lambda ns, now: [metadata_of(ns).get("name", ""), nested(ns, "status", "phase", default=""),
                    age(ns, now)])
CONFIGMAP = Printer((
    name_column(), ("Data", "string", 0, (CORE + "ConfigMap", "data")), AGE,
), lambda cm, now: [metadata_of(cm).get("name", ""),
                    len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age(cm, now)])
SECRET = Printer((
    name_column(), ("Type", "string", 0, (CORE + "Secret", "type")),
    ("Data", "string", 0, (CORE + "Secret", "data")), AGE,
), lambda s, now: [metadata_of(s).get("name", ""), s.get("type", ""), len(s.get("data") or {}),
                   age(s, now)])
SERVICEACCOUNT = Printer((
    name_column(), ("Secrets", "string", 0, (CORE + "ServiceAccount", "secrets")), AGE,
), lambda sa, now: [metadata_of(sa).get("name", ""), len(sa.get("secrets") or []), age(sa, now)])
PV = Printer((
    name_column(), ("Capacity", "string", 0, (CORE + "PersistentVolumeSpec", "capacity")),
    ("Access Modes", "string", 0, (CORE + "PersistentVolumeSpec", "accessModes")),
    ("Reclaim Policy", "string", 0,
     (CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
    ("Status", "string", 0, (CORE + "PersistentVolumeStatus", "phase")),
    ("Claim", "string", 0, (CORE + "PersistentVolumeSpec", "claimRef")),
    ("StorageClass", "string", 0, "StorageClass of the pv"),
    ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
    ("Reason", "string", 0, (CORE + "PersistentVolumeStatus", "reason")),
    AGE, ("VolumeMode", "string", 1, (CORE + "PersistentVolumeSpec", "volumeMode")),
), _pv_cells)
PVC = Printer((
    name_column(), ("Status", "string", 0, (CORE + "PersistentVolumeClaimStatus", "phase")),
    ("Volume", "string", 0, (CORE + "PersistentVolumeClaimSpec", "volumeName")),
    ("Capacity", "string", 0, (CORE + "PersistentVolumeClaimStatus", "capacity")),
    ("Access Modes", "string", 0, (CORE + "PersistentVolumeClaimStatus", "accessModes")),
    ("StorageClass", "string", 0, "StorageClass of the pvc"),
    ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
    AGE, ("VolumeMode", "string", 1, (CORE + "PersistentVolumeClaimSpec", "volumeMode")),
), _pvc_cells)
_SC = "io.k8s.api.storage.v1.StorageClass"
STORAGECLASS = Printer((
    name_column(), ("Provisioner", "string", 0, (_SC, "provisioner")),
    ("ReclaimPolicy", "string", 0, (_SC, "reclaimPolicy")),
    ("VolumeBindingMode", "string", 0, (_SC, "volumeBindingMode")),
    ("AllowVolumeExpansion", "string", 0, (_SC, "allowVolumeExpansion")), AGE,
), _storageclass_cells)
LEASE = Printer((
    name_column(),
    ("Holder", "string", 0, ("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")), AGE,
), lambda le, now: [metadata_of(le).get("name", ""),
                    nested(le, "spec", "holderIdentity", default=""), age(le, now)])


def binding_printer(what: str) -> Printer:
    return Printer((
        name_column(), ("Role", "string", 0, (f"io.k8s.api.rbac.v1.{what}", "roleRef")), AGE,
        ("Users", "string", 1, f"Users in the {what[0].lower() + what[1:]}"),
        ("Groups", "string", 1, f"Groups in the {what[0].lower() + what[1:]}"),
        ("ServiceAccounts", "string", 1, f"ServiceAccounts in the {what[0].lower() + what[1:]}"),
    ), _binding_cells)


EVENT = Printer((
    ("Last Seen", "string", 0, (CORE + "Event", "lastTimestamp")),
    ("Type", "string", 0, (CORE + "Event", "type")),
    ("Reason", "string", 0, (CORE + "Event", "reason")),
    ("Object", "string", 0, (CORE + "Event", "involvedObject")),
    ("Subobject", "string", 1, (CORE + "ObjectReference", "fieldPath")),
    ("Source", "string", 1, (CORE + "Event", "source")),
    ("Message", "string", 0, (CORE + "Event", "message")),
    ("First Seen", "string", 1, (CORE + "Event", "firstTimestamp")),
    ("Count", "string", 1, (CORE + "Event", "count")),
    name_column(priority=1),
), _event_cells)


_ADM = "io.k8s.api.admissionregistration.v1."


def webhook_configuration_printer(kind: str) -> Printer:
    return Printer((
        name_column(), ("Webhooks", "integer", 0, (_ADM + kind, "webhooks")), AGE,
    ), lambda c, now: [metadata_of(c).get("name", ""), len(c.get("webhooks") or []),
                       age(c, now)])


def _param_kind(policy: Obj) -> str:
    kind = nested(policy, "spec", "paramKind")
    return f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}" if kind else "<unset>"


def _param_ref(binding: Obj) -> str:
    ref = nested(binding, "spec", "paramRef")
    if not ref:
        return "<unset>"
    name = ref.get("name") or ("*" if ref.get("selector") is not None else "")
    return f"{ref.get('namespace') or '*'}/{name}"


ADMISSION_POLICY = Printer((
    name_column(),
    ("Validations", "integer", 0, (_ADM + "ValidatingAdmissionPolicySpec", "validations")),
    ("ParamKind", "string", 0, (_ADM + "ValidatingAdmissionPolicySpec", "paramKind")), AGE,
), lambda p, now: [metadata_of(p).get("name", ""),
                   len(nested(p, "spec", "validations", default=None) or []),
                   _param_kind(p), age(p, now)])
ADMISSION_POLICY_BINDING = Printer((
    name_column(),
    ("PolicyName", "string", 0,
     (_ADM + "ValidatingAdmissionPolicyBindingSpec", "policyName")),
    ("ParamRef", "string", 0, (_ADM + "ValidatingAdmissionPolicyBindingSpec", "paramRef")),
    AGE,
), lambda b, now: [metadata_of(b).get("name", ""),
                   nested(b, "spec", "policyName", default=""), _param_ref(b), age(b, now)])
