"""The LoadBalancer controller: one address of its own for every LoadBalancer Service
(the part of Kubernetes' cloud service controller a cloud provider fills in; here the
"cloud" is an address pool on this machine, by default 127.240.0.0/16, which Linux
routes to `lo` whole, so every address in it is local and answers from the host).

Unlike k3s' servicelb (pods binding hostPort = the Service's port on the node's
address, so one LoadBalancer per port), every Service gets its own address, so any
number of LoadBalancers may use port 80. The service proxy answers on the addresses
this controller writes to `status.loadBalancer.ingress[].ip` (ipMode VIP: traffic to
it is handled as traffic to the Service, as kube-proxy does).

Watches Services; `reconcile(namespace/name)`:
- gone, or being deleted: its address goes back to the pool;
- not a LoadBalancer (any more): its address goes back, and an ingress from our pool
  still in its status is cleared (the type changed);
- a LoadBalancer with a `loadBalancerClass` that is not ours: left alone, as
  Kubernetes' service controller leaves it to the implementation of that class;
- otherwise `spec.loadBalancerIP`, when set, in the pool and free (else a Warning
  Event `SyncLoadBalancerFailed`, as Kubernetes words a load balancer it could not
  ensure, and the Service keeps what it had); else the address it holds; else the
  lowest free one. Written to the status only when it differs. A pool with no free
  address is an Event too; the Service gets one as soon as another is released.

Allocation state is in memory and comes from the Services themselves: at start,
before the first reconcile, every LoadBalancer of ours keeps the address its status
names (the oldest Service wins should two name the same), so a restart moves none.
Choosing and recording an address happens without an await in between, so workers
never hand out one address twice.
"""

from __future__ import annotations

import copy
import ipaddress
import logging

from pinnace.api.errors import ApiError
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.events import record_event
from pinnace.client.factory import InformerFactory
from pinnace.client.informer import key_of
from pinnace.controllers.base import Controller

log = logging.getLogger(__name__)

DEFAULT_LB_POOL = "127.240.0.0/16"
# the loadBalancerClass this controller answers to (besides Services naming none)
LB_CLASS = "pinnace.io/service-lb"
COMPONENT = "service-lb-controller"


def is_ours(service: Obj) -> bool:
    """A LoadBalancer Service this controller gives an address: no class, or ours."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None,
                                                                                   LB_CLASS)


def ingress_ips(service: Obj) -> list[str]:
    lb = (service.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


def desired_ingress(ip: str) -> list[Obj]:
    return [{"ip": ip, "ipMode": "VIP"}]


class AddressPool:
    """Which address of the pool each Service holds (`namespace/name` keys)."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.holder: dict[str, str] = {}  # address -> service key
        self.held: dict[str, str] = {}  # service key -> address
        # the usable addresses, as `hosts()` has them: not the network address, nor an
        # IPv4 broadcast address (a /31 or /32 is all usable)
        net, last = int(self.network.network_address), int(self.network.broadcast_address)
        small = self.network.version == 4 and self.network.prefixlen >= 31
        self._first = net if small else net + 1
        self._last = last if small or self.network.version == 6 else last - 1
        self._hint = self._first  # no free address below this one

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def take(self, key: str, ip: str) -> None:
        self.release(key)
        self.holder[ip] = key
        self.held[key] = ip

    def release(self, key: str) -> str | None:
        ip = self.held.pop(key, None)
        if ip is not None:
            self.holder.pop(ip, None)
            self._hint = min(self._hint, int(ipaddress.ip_address(ip)))
        return ip

    def free(self) -> str | None:
        """The lowest free address (users see 127.240.0.1, .2, … in creation order)."""
        for number in range(max(self._hint, self._first), self._last + 1):
            ip = str(ipaddress.ip_address(number))
            if ip not in self.holder:
                self._hint = number
                return ip
        self._hint = self._last + 1
        return None


class ServiceLBController(Controller):
    name = "service-lb"
    workers = 4  # each reconcile waits on one status write (and an Event): as the slices'

    def __init__(self, client: Client, factory: InformerFactory, *,
                 pool: str = DEFAULT_LB_POOL) -> None:
        super().__init__(client, factory)
        self.pool = AddressPool(pool)
        self.services = self.watch("v1", "Service", on_delete=self.enqueue)
        self.service_rt = client.resource("v1", "Service")
        self._restored = False

    async def run(self) -> None:
        await self.factory.wait_synced()
        self.restore()
        await super().run()

    def restore(self) -> None:
        """Every LoadBalancer of ours keeps the address its status names (before any
        reconcile may hand that address to another); the oldest wins a clash."""
        if self._restored:
            return
        self._restored = True
        services = [s for s in self.services.list() if is_ours(s)
                    and not s["metadata"].get("deletionTimestamp")]
        services.sort(key=lambda s: (s["metadata"].get("creationTimestamp") or "",
                                     key_of(s)))
        for svc in services:
            for ip in ingress_ips(svc):
                if self.pool.contains(ip) and ip not in self.pool.holder:
                    self.pool.take(key_of(svc), ip)
                    break

    async def reconcile(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            self._release(key)
            return
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            self._release(key)
            if any(self.pool.contains(ip) for ip in ingress_ips(svc)):
                await self._write_ingress(svc, [])
                await self._event(svc, "Normal", "DeletedLoadBalancer",
                                  "Deleted load balancer")
            return
        if not is_ours(svc):
            return  # another implementation's class
        ip = await self._choose(key, svc)
        if ip is None or ingress_ips(svc) == [ip]:
            return
        await self._write_ingress(svc, desired_ingress(ip))
        await self._event(svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer")

    async def _choose(self, key: str, svc: Obj) -> str | None:
        """The address the Service is to have (taken for it), or None to leave it as it is."""
        held = self.pool.held.get(key)
        requested = (svc.get("spec") or {}).get("loadBalancerIP")
        if requested:
            problem = ""
            if not self.pool.contains(requested):
                problem = f"requested address {requested} is not in the pool {self.pool.network}"
            elif self.pool.holder.get(requested, key) != key:
                problem = f"requested address {requested} is in use by Service " \
                          f"{self.pool.holder[requested]}"
            if not problem:
                self.pool.take(key, requested)
                if held not in (None, requested):
                    self._wake_waiting()  # the address it had is free now
                return requested
            await self._event(svc, "Warning", "SyncLoadBalancerFailed",
                              f"Error syncing load balancer: failed to ensure load balancer: "
                              f"{problem}")
            return None
        if held is not None and self.pool.contains(held):
            return held
        ip = self.pool.free()
        if ip is None:
            await self._event(svc, "Warning", "SyncLoadBalancerFailed",
                              "Error syncing load balancer: failed to ensure load balancer: "
                              f"no free address in the pool {self.pool.network}")
            return None
        self.pool.take(key, ip)
        return ip

    def _release(self, key: str) -> None:
        if self.pool.release(key) is not None:
            self._wake_waiting()

    def _wake_waiting(self) -> None:
        """An address went back to the pool: the Services without one (the pool was full,
        or the one they asked for was taken) are looked at again."""
        for svc in self.services.list():
            if is_ours(svc) and key_of(svc) not in self.pool.held:
                self.enqueue(svc)

    async def _write_ingress(self, svc: Obj, ingress: list[Obj]) -> None:
        new = copy.deepcopy(svc)
        lb = new.setdefault("status", {}).setdefault("loadBalancer", {})
        if ingress:
            lb["ingress"] = ingress
        else:
            lb.pop("ingress", None)
        try:
            await self.client.update_status(self.service_rt, new)
        except ApiError as e:
            if e.code == 404:
                self._release(key_of(svc))
                return
            raise  # a conflict: the cache lagged; retried with the newer Service

    async def _event(self, svc: Obj, type_: str, reason: str, message: str) -> None:
        try:
            await record_event(self.client, svc, component=COMPONENT, type_=type_,
                               reason=reason, message=message)
        except ApiError as e:  # an event lost is no reason to retry the Service
            log.debug("service-lb: event for %s not written: %s", key_of(svc), e)
