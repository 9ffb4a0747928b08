"""The dashboard's only way out: HTTP calls to the prediction API (httpx).

Every call returns the decoded JSON or raises :class:`ApiError` with a message fit for a
user (the API's own error message when it sent one); nothing else escapes, so a page can show
``st.error(...)`` and stop instead of a traceback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

# the API's error statuses and what they mean to someone looking at the dashboard
_KINDS = {
    401: "unauthorized",
    403: "unauthorized",
    404: "not_found",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """A call that gave no usable answer.

    Attributes:
        kind: ``unreachable``, ``unauthorized``, ``not_found``, ``invalid``, ``rate_limited``,
            ``unavailable`` or ``error``.
        status: the HTTP status, None when no answer came.
        message: one line for the user.
        body: the decoded error body, when there was one.
    """

    def __init__(
        self, kind: str, message: str, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.body = body


def symbol_path(symbol: str) -> str:
    """``symbol`` as one URL path segment (``^GSPC`` -> ``%5EGSPC``)."""
    return quote(symbol, safe="")


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase, None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]), body
    return str(body)[:200], body


def request_json(
    api_url: str,
    api_key: str | None,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float = 20.0,
    accept: tuple[int, ...] = (200,),
) -> Any:
    """Call ``method api_url+path`` and return the JSON body of an accepted status.

    Args:
        api_url: the API's base URL.
        api_key: sent as ``X-API-Key`` when set.
        method: ``GET`` or ``POST``.
        path: starting with ``/``; path parameters already encoded (:func:`symbol_path`).
        params: query parameters.
        body: JSON body (POST).
        timeout_s: the whole call's limit.
        accept: statuses whose body is returned (e.g. ``(200, 503)`` for ``/health``).

    Raises:
        ApiError: no answer (down, timeout, bad URL), another status, or a body not JSON.
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.request(
            method,
            api_url + path,
            params=params,
            json=body,
            headers=headers,
            timeout=timeout_s,
        )
    except httpx.TimeoutException:
        raise ApiError(
            "unreachable", f"the API at {api_url} did not answer within {timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise ApiError(
            "unreachable", f"cannot reach the API at {api_url} ({type(exc).__name__})"
        ) from None
    if response.status_code not in accept:
        message, error_body = _error_message(response)
        kind = _KINDS.get(response.status_code, "error")
        raise ApiError(kind, f"{response.status_code}: {message}", response.status_code, error_body)
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            "error", f"{path} answered {response.status_code} without JSON", response.status_code
        ) from None
