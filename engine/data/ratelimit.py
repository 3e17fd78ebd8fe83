"""A per-process request pacer for vendors with a requests-per-minute quota."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces calls at least ``60 / requests_per_minute`` seconds apart."""

    def __init__(self, requests_per_minute: float) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be > 0, got {requests_per_minute}")
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                time.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval
