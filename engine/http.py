"""HTTP plumbing the vendor and broker clients share: a request pacer for per-minute quotas, and
a requests session with a default timeout and urllib3's retries (backoff with jitter, honouring
Retry-After) for the methods that are safe to repeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


class RateLimiter:
    """Spaces calls at least ``60 / requests_per_minute`` seconds apart, with ``headroom`` to
    spare (the server counts arrivals, which jitter): at 5%, a quota of 200 a minute is used at
    190 a minute at most."""

    def __init__(self, requests_per_minute: float, headroom: float = 0.0) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be > 0, got {requests_per_minute}")
        self.interval = 60.0 / requests_per_minute * (1.0 + headroom)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                time.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


class _PacedRetry(Retry):
    """urllib3's retry whose every repeat also waits its turn at the pacer, so retries count
    against the quota like first attempts."""

    limiter: RateLimiter | None = None

    def new(self, **kw: Any) -> _PacedRetry:
        retry = super().new(**kw)
        retry.limiter = self.limiter
        return retry  # type: ignore[return-value]

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.limiter is not None:
            self.limiter.wait()


class TimeoutSession(requests.Session):
    """A session whose requests time out after ``timeout`` seconds unless told otherwise."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


def retrying_session(
    timeout: float,
    retries: int,
    methods: Collection[str] = ("GET", "DELETE"),
    limiter: RateLimiter | None = None,
    backoff: float = 0.5,
) -> TimeoutSession:
    """A session that retries connection errors (nothing was sent) for every method, and read
    errors, timeouts, 429 and 5xx for ``methods`` only: a POST whose answer was lost is never
    repeated here."""
    retry = _PacedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset(m.upper() for m in methods),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_jitter=backoff,
        backoff_max=30.0,
        retry_after_max=60,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.limiter = limiter
    session = TimeoutSession(timeout)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
