"""Every error the API answers, mapped to a status code in this one place.

Routes raise domain errors (``stockml.errors``); the handlers below turn them into a JSON
``ErrorResponse`` with a stable ``code``. No traceback ever reaches a client: unexpected
errors are logged with the request id and answered as a plain 500. Messages and error
locations are clipped: an error never echoes a large input back.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stockml.errors import (
    BundleError,
    FeatureError,
    ModelError,
    StockmlError,
    StoreError,
    UnknownSymbolError,
    ValidationError,
)
from stockml.inference import NoRankingError, StaleFeaturesError, clip

logger = logging.getLogger(__name__)


class UnauthorizedError(StockmlError):
    """The request lacks the API key or carries a wrong one."""


class TooManyRequestsError(StockmlError):
    """The caller exceeded its rate limit; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# most specific first: the first matching class wins
STATUS: list[tuple[type[StockmlError], int, str]] = [
    (UnauthorizedError, 401, "unauthorized"),
    (TooManyRequestsError, 429, "rate_limited"),
    (UnknownSymbolError, 404, "unknown_symbol"),
    (NoRankingError, 404, "no_ranking"),
    (ValidationError, 422, "invalid_request"),
    (BundleError, 503, "model_unavailable"),
    (ModelError, 503, "model_unavailable"),
    (StaleFeaturesError, 503, "stale_features"),
    (FeatureError, 503, "features_unavailable"),
    (StoreError, 503, "store_unavailable"),
]


# longest message an error body carries (a domain message may list a whole universe)
MAX_MESSAGE = 1000
# longest echo of one input element (a field name, a location) in an error body
MAX_ECHO = 64


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, object]] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        "code": code,
        "message": clip(message, MAX_MESSAGE),
        "request_id": _request_id(request),
    }
    if details is not None:
        body["details"] = details
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count_error(code)
    return JSONResponse({"error": body}, status_code=status)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status, code = next(
        ((status, code) for cls, status, code in STATUS if isinstance(exc, cls)),
        (500, "internal_error"),
    )
    if status >= 500:
        logger.warning("request %s failed: %s: %s", _request_id(request), type(exc).__name__, exc)
    response = error_response(request, status, code, str(exc))
    if isinstance(exc, TooManyRequestsError):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, UnauthorizedError):
        response.headers["WWW-Authenticate"] = "ApiKey"
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # only location, message and type: the raw input may be large or sensitive
    details: list[dict[str, object]] = [
        {
            # a location can hold input (an unknown field's name): clipped
            "loc": [clip(str(p), MAX_ECHO) for p in e.get("loc", ())],
            "msg": clip(str(e.get("msg")), 200),
            "type": str(e.get("type")),
        }
        for e in exc.errors()[:20]
    ]
    return error_response(request, 422, "invalid_request", "request validation failed", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    # FastAPI answers 400 for a body it cannot decode (e.g. not UTF-8); like malformed JSON,
    # that is an invalid request: one status (422) for every body the API cannot accept
    if status == 400:
        status = 422
    code = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        422: "invalid_request",
    }.get(status, "http_error")
    response = error_response(request, status, code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("request %s failed unexpectedly", _request_id(request))
    return error_response(request, 500, "internal_error", "internal error; quote the request id")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(StockmlError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
