"""Suite-wide settings.

Property-based tests explore new random inputs on every developer run; in CI
(`CI=true`) they replay a fixed sequence, so a submission's result depends on its
code alone. A failure found locally is a real bug either way.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
