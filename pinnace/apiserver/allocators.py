"""ClusterIP and NodePort allocation for Services (admission, at write time).

The allocated sets live in memory, rebuilt from the Service cache at start; a
write that fails after allocating gives its allocations back through the undo
function `allocate` returns. Kubernetes' rules and wording are kept:
- every type but ExternalName has a ClusterIP (or `None`: headless, ClusterIP type
  only — validation says so); a requested one must be in the range and free;
- NodePort and LoadBalancer ports get node ports, but a LoadBalancer with
  `allocateLoadBalancerNodePorts: false` only those the client names; a port that
  names none keeps the one it had (matched by port and protocol); a LoadBalancer
  with `externalTrafficPolicy: Local` gets a `healthCheckNodePort` too;
- a named node port must be in the range ("provided port is not in the valid
  range") and free ("provided port is already allocated"), 422 naming the field;
- a type change frees what the new type does not use (`drop_type_dependent_fields`
  before, `release_old` once the update landed).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from typing import Any

from pinnace.api import errors

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODEPORT_RANGE = (30000, 32767)


def _node_ports(svc: dict[str, Any]) -> set[int]:
    """The node ports a Service holds: its ports' and its health check's."""
    spec = svc.get("spec") or {}
    held = {p["nodePort"] for p in spec.get("ports") or [] if isinstance(p, dict) and
            isinstance(p.get("nodePort"), int) and p["nodePort"]}
    if isinstance(spec.get("healthCheckNodePort"), int) and spec["healthCheckNodePort"]:
        held.add(spec["healthCheckNodePort"])
    return held


def _cluster_ips(svc: dict[str, Any]) -> set[str]:
    spec = svc.get("spec") or {}
    ips = set(spec.get("clusterIPs") or [])
    if spec.get("clusterIP"):
        ips.add(spec["clusterIP"])
    ips.discard("None")
    return ips


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _allocates_node_ports(spec: dict[str, Any]) -> bool:
    """Whether ports without a nodePort get one: NodePort, and LoadBalancer unless
    `allocateLoadBalancerNodePorts: false` (the load balancer reaches pods without them)."""
    if spec.get("type") == "LoadBalancer":
        return spec.get("allocateLoadBalancerNodePorts") is not False
    return spec.get("type") == "NodePort"


def _needs_health_check_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _externally_accessible(spec: dict[str, Any]) -> bool:
    return _needs_node_ports(spec) or (spec.get("type", "ClusterIP") == "ClusterIP"
                                       and bool(spec.get("externalIPs")))


def drop_type_dependent_fields(svc: dict[str, Any], old: dict[str, Any]) -> None:
    """A type change drops what only the old type used, when the client left it as it
    was (Kubernetes' dropTypeDependentFields): to a type without node ports, the node
    ports (and the health check's); to ExternalName, the ClusterIP; away from
    LoadBalancer, `allocateLoadBalancerNodePorts` and `loadBalancerClass`; to a type
    not reachable from outside, `externalTrafficPolicy`. A value the client changed
    stays, for validation to judge."""
    spec, old_spec = svc.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    if _needs_node_ports(old_spec) and not _needs_node_ports(spec) and \
            {p.get("nodePort") for p in ports} - {None, 0} <= _node_ports(old):
        for port in ports:
            port.pop("nodePort", None)
    if _needs_health_check_port(old_spec) and not _needs_health_check_port(spec) and \
            spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if spec.get("type") == "ExternalName" and old_spec.get("type") != "ExternalName":
        if spec.get("clusterIP") == old_spec.get("clusterIP") and \
                spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if old_spec.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if _externally_accessible(old_spec) and not _externally_accessible(spec) and \
            spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)


class ServiceAllocator:
    def __init__(self, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 nodeport_range: tuple[int, int] = DEFAULT_NODEPORT_RANGE) -> None:
        self.network = ipaddress.ip_network(service_cidr)
        self.nodeport_range = nodeport_range
        self.ips: set[str] = set()
        self.ports: set[int] = set()

    def load(self, services: list[dict[str, Any]]) -> None:
        for svc in services:
            self.ips |= _cluster_ips(svc)
            self.ports |= _node_ports(svc)

    @property
    def first_ip(self) -> str:
        """The `kubernetes` Service's address: the first of the range."""
        return str(self.network.network_address + 1)

    def allocate(self, svc: dict[str, Any], old: dict[str, Any] | None) -> Callable[[], None]:
        spec = svc.setdefault("spec", {})
        svc_type = spec.get("type", "ClusterIP")
        taken_ips: set[str] = set()
        taken_ports: set[int] = set()
        mine: set[int] = set()  # the node ports this write gives the Service
        old_ips = _cluster_ips(old) if old else set()
        old_ports = _node_ports(old) if old else set()
        causes: list[errors.Cause] = []

        def undo() -> None:
            self.ips -= taken_ips
            self.ports -= taken_ports

        if svc_type != "ExternalName":
            ip = spec.get("clusterIP")
            if ip in (None, ""):
                ip = old["spec"].get("clusterIP") if old else None
            if ip in (None, ""):
                ip = self._free_ip()
                taken_ips.add(ip)
            elif ip != "None" and ip not in old_ips:
                try:
                    ok = ipaddress.ip_address(ip) in self.network
                except ValueError:
                    ok = False
                if not ok:
                    causes.append(errors.Cause(
                        "spec.clusterIPs", f'Invalid value: ["{ip}"]: failed to allocate IP '
                        f"{ip}: the provided IP ({ip}) is not in the valid range. The range of "
                        f"valid IPs is {self.network}"))
                elif ip in self.ips:
                    causes.append(errors.Cause(
                        "spec.clusterIPs", f'Invalid value: ["{ip}"]: failed to allocate IP '
                        f"{ip}: provided IP is already allocated"))
                else:
                    taken_ips.add(ip)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            self.ips |= taken_ips
        if _needs_node_ports(spec):
            old_spec = (old or {}).get("spec") or {}
            # a port that names no nodePort keeps the one it had (Kubernetes'
            # patchAllocatedValues: a PUT of the manifest does not move the port)
            had = {(p.get("port"), p.get("protocol") or "TCP"): p["nodePort"]
                   for p in old_spec.get("ports") or []
                   if isinstance(p, dict) and p.get("nodePort")} \
                if _needs_node_ports(old_spec) else {}
            # a port chosen for one must not be one the client asks for another
            asked = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
            for i, port in enumerate(spec.get("ports") or []):
                if not isinstance(port, dict):
                    continue
                if port.get("nodePort") in (None, 0):
                    kept = had.get((port.get("port"), port.get("protocol") or "TCP"))
                    if kept:
                        port["nodePort"] = kept
                    elif _allocates_node_ports(spec):
                        port["nodePort"] = self._free_port(taken_ports | asked)
                    else:
                        port.pop("nodePort", None)
                        continue
                cause = self._take_port(port["nodePort"], f"spec.ports[{i}].nodePort",
                                        old_ports, taken_ports, mine)
                if cause is not None:
                    causes.append(cause)
        else:
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.pop("nodePort", None)
        if _needs_health_check_port(spec):
            old_spec = (old or {}).get("spec") or {}
            if not spec.get("healthCheckNodePort"):
                kept = old_spec.get("healthCheckNodePort") \
                    if _needs_health_check_port(old_spec) else None
                spec["healthCheckNodePort"] = kept or self._free_port(taken_ports | mine)
            cause = self._take_port(spec["healthCheckNodePort"], "spec.healthCheckNodePort",
                                    old_ports, taken_ports, mine)
            if cause is not None:
                causes.append(cause)
        self.ports |= taken_ports
        if causes:
            undo()
            raise errors.invalid("Service", (svc.get("metadata") or {}).get("name", ""), causes)
        return undo

    def release_old(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        self.ips -= _cluster_ips(old) - _cluster_ips(new)
        self.ports -= _node_ports(old) - _node_ports(new)

    def release(self, svc: dict[str, Any]) -> None:
        self.ips -= _cluster_ips(svc)
        self.ports -= _node_ports(svc)

    def _free_ip(self) -> str:
        size = self.network.num_addresses
        for _ in range(1000):
            # skip the network address and the first one (kept for `kubernetes`)
            candidate = str(self.network.network_address + random.randrange(2, size - 1))
            if candidate not in self.ips:
                return candidate
        for offset in range(2, size - 1):
            candidate = str(self.network.network_address + offset)
            if candidate not in self.ips:
                return candidate
        raise errors.ApiError(500, "InternalError", "no free ClusterIP in range")

    def _take_port(self, want: Any, field: str, old_ports: set[int], taken: set[int],
                   mine: set[int]) -> errors.Cause | None:
        """Give the Service node port `want` (newly taken ones go to `taken` too), or say
        why it cannot have it. One port may serve a TCP and a UDP port of one Service."""
        if want in mine:
            return None
        if want in old_ports:  # the Service held it already
            mine.add(want)
            return None
        low, high = self.nodeport_range
        if not isinstance(want, int) or not low <= want <= high:
            return errors.Cause(field, f"Invalid value: {want}: provided port is not in the "
                                       f"valid range. The range of valid ports is {low}-{high}")
        if want in self.ports:
            return errors.Cause(field, f"Invalid value: {want}: provided port is already "
                                       "allocated")
        taken.add(want)
        mine.add(want)
        return None

    def _free_port(self, avoid: set[Any]) -> int:
        low, high = self.nodeport_range
        for _ in range(64):  # a random probe finds one at once unless the range is nearly full
            candidate = random.randint(low, high)
            if candidate not in self.ports and candidate not in avoid:
                return candidate
        free = [p for p in range(low, high + 1) if p not in self.ports and p not in avoid]
        if not free:
            raise errors.ApiError(500, "InternalError", "no free NodePort in range")
        return random.choice(free)
