"""Exponential back-off, the arithmetic every retrying component shares.

Kubernetes doubles a delay per consecutive failure up to a cap (client-go's
ItemExponentialFailureRateLimiter, the kubelet's crash-loop and image-pull back-off,
the Job controller's pod-failure back-off, the scheduler's pod back-off). The
components differ only in base and cap; the arithmetic is here once. Pure: the
callers keep their own clocks and failure counts.
"""

from __future__ import annotations

from dataclasses import dataclass


def exponential_delay(base: float, cap: float, failures: int) -> float:
    """The delay after `failures` consecutive failures: 0 for none, then base, 2·base,
    4·base, … never above cap."""
    if failures <= 0:
        return 0.0
    # 2**exponent overflows a float long before any cap matters: stop doubling at 64
    return min(base * 2.0 ** min(failures - 1, 64), cap)


@dataclass
class Backoff:
    """One back-off entry: failures so far and when the next try may start (on the
    caller's clock)."""

    base: float
    cap: float
    failures: int = 0
    until: float = 0.0

    @property
    def delay(self) -> float:
        return exponential_delay(self.base, self.cap, self.failures)

    def fail(self, now: float) -> float:
        """Count one more failure; returns the delay now in force."""
        self.failures += 1
        self.until = now + self.delay
        return self.delay

    def reset(self) -> None:
        self.failures = 0
        self.until = 0.0

    def remaining(self, now: float) -> float:
        return max(self.until - now, 0.0)
