"""The scheduler: a queue with backoff, a framework of Filter and Score plugins (one
module each, in `plugins/`), and a binder that assumes pods and binds in parallel."""

from pinnace.scheduler.framework import (
    Code,
    FilterPlugin,
    NodeInfo,
    PodInfo,
    ScorePlugin,
    Status,
    pod_requests,
)
from pinnace.scheduler.queue import SchedulingQueue
from pinnace.scheduler.scheduler import Scheduler, SchedulerStats, fit_error_message
from pinnace.scheduler.snapshot import ClusterSnapshot

__all__ = ["ClusterSnapshot", "Code", "FilterPlugin", "NodeInfo", "PodInfo", "Scheduler",
           "SchedulerStats", "SchedulingQueue", "ScorePlugin", "Status", "fit_error_message",
           "pod_requests"]
