"""The one name for an API object as components hold it: decoded JSON."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
