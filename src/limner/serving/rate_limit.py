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

    def acquire(self, caller: str, *, per_minute: float | None = None, burst: int | None = None) -> float | None:
        """Take one token for `caller` (at its own rate and burst, if given): None if allowed,
        else seconds until one is free."""
        rate = self.rate if per_minute is None else per_minute / 60.0
        burst = self.burst if burst is None else float(burst)
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(caller, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._remember(caller, (tokens - 1.0, now))
                return None
            self._remember(caller, (tokens, now))
            return (1.0 - tokens) / rate

    def _remember(self, caller: str, bucket: tuple[float, float]) -> None:
        if caller not in self._buckets and len(self._buckets) >= self.max_callers:
            # a flood of distinct callers (spoofed addresses) must not grow memory without bound:
            # forget the full buckets, which carry no debt
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1e-9}
        self._buckets[caller] = bucket
