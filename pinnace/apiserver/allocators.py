"""ClusterIP and NodePort allocation for Services (admission, at write time).

The allocated sets live in memory, rebuilt from the Service cache at start; a
write that fails after allocating gives its allocations back through the undo
function `allocate` returns. Kubernetes' wording for conflicts is kept
("provided port is already allocated").
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
    ports = (svc.get("spec") or {}).get("ports") or []
    return {p["nodePort"] for p in ports if isinstance(p, dict) and p.get("nodePort")}


def _cluster_ips(svc: dict[str, Any]) -> set[str]:
    spec = svc.get("spec") or {}
    ips = set(spec.get("clusterIPs") or [])
    if spec.get("clusterIP"):
        ips.add(spec["clusterIP"])
    ips.discard("None")
    return ips


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def drop_type_dependent_fields(svc: dict[str, Any], old: dict[str, Any]) -> None:
    """A type change drops the allocations the old type needed when the client left
    them as they were (Kubernetes' dropTypeDependentFields): NodePort → ClusterIP
    frees the node ports, anything → ExternalName frees the ClusterIP."""
    spec, old_spec = svc.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    if _needs_node_ports(old_spec) and not _needs_node_ports(spec) and \
            _node_ports(svc) == _node_ports(old):
        for port in ports:
            port.pop("nodePort", None)
    if spec.get("type") == "ExternalName" and old_spec.get("type") != "ExternalName" and \
            spec.get("clusterIP") == old_spec.get("clusterIP"):
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)


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
        if svc_type in ("NodePort", "LoadBalancer"):
            for i, port in enumerate(spec.get("ports") or []):
                if not isinstance(port, dict):
                    continue
                want = port.get("nodePort")
                if want in (None, 0):
                    port["nodePort"] = self._free_port()
                    taken_ports.add(port["nodePort"])
                elif want not in old_ports:
                    if want in self.ports or want in taken_ports:
                        causes.append(errors.Cause(
                            f"spec.ports[{i}].nodePort",
                            f"Invalid value: {want}: provided port is already allocated"))
                    else:
                        taken_ports.add(want)
                self.ports |= taken_ports
        else:
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.pop("nodePort", None)
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

    def _free_port(self) -> int:
        low, high = self.nodeport_range
        free = [p for p in range(low, high + 1) if p not in self.ports]
        if not free:
            raise errors.ApiError(500, "InternalError", "no free NodePort in range")
        return random.choice(free)
