"""Jobs (batch/v1): the generated selector and the orphaning delete
(Kubernetes' `pkg/registry/batch/job/strategy.go`).

- Creating a Job without `manualSelector` gets the selector and pod labels
  (`batch.kubernetes.io/controller-uid`, `job-name`) from `defaults.job_selector_defaults`.
- A delete that names no propagation policy orphans the Job's pods: batch/v1 keeps
  this default for compatibility (kubectl always sends Background).
"""

from __future__ import annotations

from pinnace.api import defaults
from pinnace.api.types import Obj
from pinnace.apiserver.strategy import GenerationStrategy


class JobStrategy(GenerationStrategy):
    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        defaults.job_selector_defaults(obj)

    def default_propagation(self) -> str | None:
        return "Orphan"
