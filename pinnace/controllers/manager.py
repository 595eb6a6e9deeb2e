"""The controller manager: every controller of the cluster, on one shared informer factory.

    controllers = build_controllers(client, factory, settings)
    await factory.start()
    await asyncio.gather(*(c.run() for c in controllers))

`ControllerSettings` holds the knobs a cluster operator may turn (Kubernetes'
kube-controller-manager flags of the same meaning).
"""

from __future__ import annotations

from dataclasses import dataclass

from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller
from pinnace.controllers.cronjob import CronJobController
from pinnace.controllers.daemonset import DaemonSetController
from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.endpoints import EndpointsController
from pinnace.controllers.endpointslice import EndpointSliceController
from pinnace.controllers.endpointslice_mirroring import EndpointSliceMirroringController
from pinnace.controllers.garbage_collector import GarbageCollector
from pinnace.controllers.job import JobController
from pinnace.controllers.local_path import LocalPathProvisioner
from pinnace.controllers.namespace import NamespaceController
from pinnace.controllers.node_ipam import NodeIpamController
from pinnace.controllers.node_lifecycle import NodeLifecycleController
from pinnace.controllers.pod_gc import PodGCController
from pinnace.controllers.pv_binder import PersistentVolumeBinder
from pinnace.controllers.pv_protection import PVCProtectionController, PVProtectionController
from pinnace.controllers.replicaset import ReplicaSetController
from pinnace.controllers.service_lb import DEFAULT_LB_POOL, ServiceLBController
from pinnace.controllers.serviceaccount import ServiceAccountsController
from pinnace.controllers.statefulset import StatefulSetController
from pinnace.controllers.ttl_after_finished import TTLAfterFinishedController


@dataclass(frozen=True)
class ControllerSettings:
    # --node-monitor-grace-period: a node silent this long is NotReady/Unknown
    node_monitor_grace_period: float = 40.0
    # base of the Job controller's exponential pod-failure backoff
    job_backoff_base: float = 10.0
    # --lb-pool: the addresses LoadBalancer Services get (all of 127/8 is local to Linux)
    lb_pool: str = DEFAULT_LB_POOL


def build_controllers(client: Client, factory: InformerFactory,
                      settings: ControllerSettings | None = None) -> list[Controller]:
    s = settings or ControllerSettings()
    return [
        ReplicaSetController(client, factory),
        DeploymentController(client, factory),
        JobController(client, factory, backoff_base=s.job_backoff_base),
        TTLAfterFinishedController(client, factory),
        CronJobController(client, factory),
        DaemonSetController(client, factory),
        StatefulSetController(client, factory),
        GarbageCollector(client, factory),
        NamespaceController(client, factory),
        PodGCController(client, factory),
        ServiceAccountsController(client, factory),
        EndpointSliceController(client, factory),
        EndpointsController(client, factory),
        EndpointSliceMirroringController(client, factory),
        ServiceLBController(client, factory, pool=s.lb_pool),
        NodeLifecycleController(client, factory,
                                grace_period=s.node_monitor_grace_period),
        NodeIpamController(client, factory),
        PersistentVolumeBinder(client, factory),
        PVCProtectionController(client, factory),
        PVProtectionController(client, factory),
        LocalPathProvisioner(client, factory),
    ]
