"""The controller manager: every controller of the cluster, on one shared informer factory.

    controllers = build_controllers(client, factory, settings)
    await factory.start()
    await asyncio.gather(*(c.run() for c in controllers))

`ControllerSettings` holds the knobs a cluster operator may turn (Kubernetes'
kube-controller-manager flags of the same meaning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pinnace.api.service_account_tokens import TokenKeys
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
from pinnace.controllers.root_ca_publisher import RootCAPublisher
from pinnace.controllers.service_lb import DEFAULT_LB_POOL, ServiceLBController
from pinnace.controllers.serviceaccount import ServiceAccountsController
from pinnace.controllers.serviceaccount_tokens import TokensController
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
                      settings: ControllerSettings | None = None, *, root_ca: bytes = b"",
                      service_account_keys: TokenKeys | None = None,
                      client_for: Callable[[str], Client] | None = None) -> list[Controller]:
    """Every controller, each writing through `client_for(<its ServiceAccount's name>)`
    (Kubernetes' `--use-service-account-credentials`), or all through `client`; with
    `root_ca` (--root-ca-file) the kube-root-ca.crt publisher, with it and
    `service_account_keys` (--service-account-private-key-file) the token controller
    filling legacy ServiceAccount token Secrets, which acts as `client` (the controller
    manager itself, as in Kubernetes)."""
    s = settings or ControllerSettings()
    c = client_for or (lambda _name: client)
    extra: list[Controller] = []
    if root_ca:
        extra.append(RootCAPublisher(c("root-ca-cert-publisher"), factory, root_ca=root_ca))
        if service_account_keys is not None:
            extra.append(TokensController(client, factory, keys=service_account_keys,
                                          root_ca=root_ca))
    return [*extra,
        ReplicaSetController(c("replicaset-controller"), factory),
        DeploymentController(c("deployment-controller"), factory),
        JobController(c("job-controller"), factory, backoff_base=s.job_backoff_base),
        TTLAfterFinishedController(c("ttl-after-finished-controller"), factory),
        CronJobController(c("cronjob-controller"), factory),
        DaemonSetController(c("daemon-set-controller"), factory),
        StatefulSetController(c("statefulset-controller"), factory),
        GarbageCollector(c("generic-garbage-collector"), factory),
        NamespaceController(c("namespace-controller"), factory),
        PodGCController(c("pod-garbage-collector"), factory),
        ServiceAccountsController(c("service-account-controller"), factory),
        EndpointSliceController(c("endpointslice-controller"), factory),
        EndpointsController(c("endpoint-controller"), factory),
        EndpointSliceMirroringController(c("endpointslicemirroring-controller"), factory),
        ServiceLBController(c("service-controller"), factory, pool=s.lb_pool),
        NodeLifecycleController(c("node-controller"), factory,
                                grace_period=s.node_monitor_grace_period),
        NodeIpamController(c("node-controller"), factory),  # as kube-controller-manager's
        PersistentVolumeBinder(c("persistent-volume-binder"), factory),
        PVCProtectionController(c("pvc-protection-controller"), factory),
        PVProtectionController(c("pv-protection-controller"), factory),
        LocalPathProvisioner(c("local-path-provisioner"), factory),
    ]
