"""API key check, per-caller rate limiting, request body limit and CORS.

- ``X-API-Key`` is compared in constant time with ``STOCKML_API_KEY``; the check is off
  when that variable is unset (local development).
- The rate limit is a token bucket per API key (or client IP without a key) holding
  ``rate_limit_per_minute`` tokens. On Lambda it is per container: the API Gateway usage
  plan (template.yaml) is the account-wide throttle; this one protects each container.
- The client IP is the connection's peer: API Gateway's ``sourceIp`` on Lambda, the TCP peer
  under uvicorn (``stockml serve`` turns uvicorn's own forwarded-header handling off). An
  ``X-Forwarded-For`` header is believed only from ``api.trusted_proxies``: anyone else can
  write one, and a limit keyed on it would be bypassed by changing it per request.
- A request body above ``api.max_body_bytes`` is answered 413 (JSON, like every error)
  without being read further.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockml.api.errors import MAX_ECHO, TooManyRequestsError, UnauthorizedError, error_response
from stockml.inference import clip

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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    """``api.trusted_proxies`` as networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address (a name, garbage, a port suffix): never trusted
        return False
    return any(ip in net for net in networks)


def peer_address(scope: Scope) -> str:
    """The address that connected: API Gateway's ``sourceIp`` on Lambda, else the TCP peer."""
    event = scope.get("aws.event")  # set by Mangum
    if isinstance(event, dict):
        context = event.get("requestContext") or {}
        # HTTP API (v2): requestContext.http.sourceIp; REST API (v1): requestContext.identity
        source = (context.get("http") or {}).get("sourceIp") or (context.get("identity") or {}).get(
            "sourceIp"
        )
        if source:
            return str(source)
    client = scope.get("client")
    return str(client[0]) if client and client[0] else "unknown"


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """The caller's IP: the peer, or, when the peer is a trusted proxy, the nearest address in
    ``X-Forwarded-For`` that is not one (proxies append, so the right end is the nearest)."""
    peer = peer_address(scope)
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer  # every hop a trusted proxy: the farthest one


async def rate_limit(
    request: Request, key: Annotated[str | None, Depends(require_api_key)]
) -> None:
    """Count the request against its caller: the API key if any, else the client IP."""
    if key:
        # hash-free: the key is only a dict key in memory, never logged
        request.app.state.rate_limiter.hit(f"key:{key}")
        return
    client = client_address(request.scope, request.app.state.trusted_proxies)
    request.app.state.rate_limiter.hit(f"ip:{clip(client, MAX_ECHO)}")


class BodyLimitMiddleware:
    """Answer 413 to a request body above ``max_bytes``, without reading the rest of it.

    A declared ``Content-Length`` above the limit is refused before the app runs; a body
    without one (chunked) is counted as the app reads it, and reading past the limit raises
    a 413 ``HTTPException`` there, which the error handlers answer. Pure ASGI: the body is
    passed on as it arrives, never buffered. (FastAPI's own ``max_body_size`` answers a
    declared length in plain text, outside the API's JSON error contract.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body exceeds {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    response = error_response(Request(scope), 413, "payload_too_large", message)
                    await response(scope, receive, send)
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, detail=message)
            return received

        await self.app(scope, counted, send)


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Allow browsers from ``origins`` only (never ``*`` by default)."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=[API_KEY_HEADER, "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
