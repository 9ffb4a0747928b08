"""API key check, per-caller rate limiting and CORS.

- ``X-API-Key`` is compared in constant time with ``STOCKML_API_KEY``; the check is off
  when that variable is unset (local development).
- The rate limit is a token bucket per API key (or client IP without a key) holding
  ``rate_limit_per_minute`` tokens. On Lambda it is per container: the API Gateway usage
  plan (template.yaml) is the account-wide throttle; this one protects each container.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import APIKeyHeader

from stockml.api.errors import TooManyRequestsError, UnauthorizedError

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Required when the server sets STOCKML_API_KEY.",
)


class RateLimiter:
    """Token buckets per caller: ``per_minute`` requests, refilled continuously."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 10_000,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_callers = max_callers

    def hit(self, caller: str) -> None:
        """Take one token for ``caller``.

        Raises:
            TooManyRequestsError: the bucket is empty (``retry_after_s`` says when one is back).
        """
        if self.capacity <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, seen = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - seen) * self.rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                retry = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise TooManyRequestsError(
                    f"rate limit of {int(self.capacity)} requests per minute exceeded", retry
                )
            if len(self._buckets) >= self._max_callers and caller not in self._buckets:
                # forget the callers seen longest ago: memory stays bounded under many IPs
                for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[
                    : self._max_callers // 10
                ]:
                    del self._buckets[key]
            self._buckets[caller] = (tokens - 1.0, now)


async def require_api_key(
    request: Request, key: Annotated[str | None, Depends(api_key_header)]
) -> str | None:
    """Check the API key when the server has one; returns the key (None when the check is off)."""
    expected: str | None = request.app.state.api_key
    if expected is None:
        return None
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise UnauthorizedError(f"missing or wrong {API_KEY_HEADER} header")
    return key


async def rate_limit(
    request: Request, key: Annotated[str | None, Depends(require_api_key)]
) -> None:
    """Count the request against its caller: the API key if any, else the client IP."""
    client = request.client.host if request.client else "unknown"
    # hash-free: the key is only a dict key in memory, never logged
    request.app.state.rate_limiter.hit(f"key:{key}" if key else f"ip:{client}")


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Allow browsers from ``origins`` only (never ``*`` by default)."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=[API_KEY_HEADER, "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
