"""Where the shared seed manifests are: ../shared/manifests beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = Path(os.environ.get("PINNACE_MANIFESTS",
                                REPO.parent / "shared" / "manifests")).resolve()
