"""Small Streamlit pieces the pages share: the config, API calls with clear errors, state in the URL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

from stockml_dashboard.client import ApiError
from stockml_dashboard.config import DashboardConfig, load_config

T = TypeVar("T")

HINTS = {
    "unreachable": "Is the API running? The dashboard calls `{url}` "
    "(set `STOCKML_DASHBOARD__API_URL` to change it).",
    "unauthorized": "The API wants a key: set `STOCKML_API_KEY` to the API's key.",
    "unavailable": "The API is up but cannot answer (no model bundle or store): "
    "see the Status page.",
    "rate_limited": "The API's rate limit was reached; wait a minute and reload.",
}


def config() -> DashboardConfig:
    """The dashboard's configuration; a bad value stops the page with a message."""
    try:
        return load_config()
    except ValueError as exc:
        st.error(f"The dashboard is misconfigured: {exc}")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def show_api_error(error: ApiError, cfg: DashboardConfig) -> None:
    """An API failure as a message (and a hint at the fix), never a traceback."""
    st.error(f"The API did not answer as expected: {error.message}")
    hint = HINTS.get(error.kind)
    if hint:
        st.caption(hint.format(url=cfg.api_url))


def call(fn: Callable[..., T], cfg: DashboardConfig, *args: Any, what: str = "the API") -> T:
    """``fn(cfg, *args)`` under a spinner; an ApiError is shown and the page stops."""
    try:
        with st.spinner(f"Asking {what}..."):
            return fn(cfg, *args)
    except ApiError as error:
        show_api_error(error, cfg)
        st.stop()
        raise  # unreachable


def choose(options: Sequence[str], param: str, label: str, **kwargs: Any) -> str:
    """A select box whose choice lives in the URL (``?param=value``), so links share a view.

    The choice is also kept for the session: moving to another page (which clears the URL's
    parameters) keeps the same symbol.
    """
    wanted = st.query_params.get(param) or st.session_state.get(f"chosen_{param}")
    index = list(options).index(wanted) if wanted is not None and wanted in options else 0
    value = str(st.selectbox(label, options, index=index, **kwargs))
    st.query_params[param] = value
    st.session_state[f"chosen_{param}"] = value
    return value


def int_param(param: str, default: int, low: int, high: int) -> int:
    """An integer from the URL, clamped to ``[low, high]``; ``default`` when absent or bad."""
    try:
        value = int(st.query_params.get(param, default))
    except (TypeError, ValueError):
        value = default
    return max(low, min(high, value))


def list_param(param: str, allowed: Sequence[str], default: Sequence[str]) -> list[str]:
    """A comma-separated list from the URL, keeping only ``allowed`` names."""
    raw = st.query_params.get(param)
    if not raw:
        return list(default)
    chosen = [name for name in raw.split(",") if name in allowed]
    return chosen or list(default)
