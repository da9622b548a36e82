"""A token bucket per caller: bursts up to `burst`, then `per_minute` on average."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, *, clock=time.monotonic, max_callers: int = 100_000) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.clock = clock
        self.max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill time)
        self._lock = threading.Lock()

    def acquire(self, caller: str) -> float | None:
        """Take one token for `caller`: None if allowed, else seconds until one is free."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._remember(caller, (tokens - 1.0, now))
                return None
            self._remember(caller, (tokens, now))
            return (1.0 - tokens) / self.rate

    def _remember(self, caller: str, bucket: tuple[float, float]) -> None:
        if caller not in self._buckets and len(self._buckets) >= self.max_callers:
            # a flood of distinct callers (spoofed addresses) must not grow memory without bound:
            # forget the full buckets, which carry no debt
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1e-9}
        self._buckets[caller] = bucket
