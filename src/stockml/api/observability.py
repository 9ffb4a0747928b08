"""Request ids, structured access logs and request/error/latency counters.

Counters are exposed as Prometheus text at ``GET /metrics-prom`` (scraped locally, or read
by a CloudWatch agent); on Lambda the same numbers also appear in every JSON access log
line (``latency_ms``, ``status``, ``route``), from which CloudWatch metric filters derive
alarms. We chose this over Powertools' EMF metrics so that one code path serves uvicorn and
Lambda without a flush per invocation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from bisect import bisect_left
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockml.inference import bundle_loads

access_logger = logging.getLogger("stockml.api.access")

# seconds; chosen around the 5 ms goal of a warm prediction
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MetricsRegistry:
    """In-memory counters: requests by (method, route, status), errors by code, latency histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.latency_buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.latency_buckets[route][bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum[route] += seconds

    def count_error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def prometheus(self) -> str:
        """The counters in the Prometheus text exposition format (version 0.0.4)."""
        lines = [
            "# HELP stockml_requests_total HTTP requests by method, route and status.",
            "# TYPE stockml_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'stockml_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP stockml_errors_total Error answers by error code.",
                "# TYPE stockml_errors_total counter",
            ]
            for code, n in sorted(self.errors.items()):
                lines.append(f'stockml_errors_total{{code="{code}"}} {n}')
            lines += [
                "# HELP stockml_request_seconds Request latency by route.",
                "# TYPE stockml_request_seconds histogram",
            ]
            for route, counts in sorted(self.latency_buckets.items()):
                total = 0
                for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                    total += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(
                        f'stockml_request_seconds_bucket{{route="{route}",le="{le}"}} {total}'
                    )
                lines.append(
                    f'stockml_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}'
                )
                lines.append(f'stockml_request_seconds_count{{route="{route}"}} {total}')
            lines += [
                "# HELP stockml_bundle_loads_total Model bundles read by this process.",
                "# TYPE stockml_bundle_loads_total counter",
                f"stockml_bundle_loads_total {bundle_loads()}",
            ]
        return "\n".join(lines) + "\n"


class RequestContextMiddleware:
    """Pure ASGI middleware: request id in and out, one JSON access log line, counters."""

    def __init__(self, app: ASGIApp, metrics: MetricsRegistry) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # the route template, not the raw path: bounded label values
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, elapsed)
            access_logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "latency_ms": round(1000 * elapsed, 3),
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and 0 < len(value) <= 128:
            return value.decode("latin-1")
    context = scope.get("aws.context")  # set by Mangum on Lambda
    aws_id = getattr(context, "aws_request_id", None)
    return str(aws_id) if aws_id else uuid.uuid4().hex


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_json_logging(level: int | str = logging.INFO) -> None:
    """Send the root logger's records to stderr as JSON lines (``stockml serve``, and the
    Lambda handler, where stderr goes to CloudWatch Logs)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
