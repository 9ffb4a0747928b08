"""The API calls the pages make, cached briefly with ``st.cache_data`` (TTL from the config).

Errors are not cached (Streamlit never caches an exception): a page that met a down API
retries on its next run.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from stockml_dashboard.client import request_json, symbol_path
from stockml_dashboard.config import DashboardConfig, load_config

try:
    TTL_S = load_config().cache_ttl_s
except ValueError:  # a bad setting is reported by the page (ui.config), not at import
    TTL_S = DashboardConfig.cache_ttl_s


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _get(
    api_url: str,
    api_key: str | None,
    path: str,
    params: tuple[tuple[str, Any], ...],
    timeout_s: float,
    accept: tuple[int, ...] = (200,),
) -> Any:
    return request_json(
        api_url, api_key, "GET", path, params=dict(params), timeout_s=timeout_s, accept=accept
    )


def get(cfg: DashboardConfig, path: str, accept: tuple[int, ...] = (200,), **params: Any) -> Any:
    """``GET path?params`` on the configured API, cached for ``cfg.cache_ttl_s``."""
    clean = tuple(sorted((k, v) for k, v in params.items() if v is not None))
    return _get(cfg.api_url, cfg.api_key, path, clean, cfg.timeout_s, accept)


def health(cfg: DashboardConfig) -> Any:
    """``/health`` (200 or 503, both with a body saying what is wrong)."""
    return get(cfg, "/health", accept=(200, 503))


def version(cfg: DashboardConfig) -> Any:
    return get(cfg, "/version")


def symbols(cfg: DashboardConfig) -> Any:
    return get(cfg, "/symbols")


def plot(cfg: DashboardConfig, symbol: str, history: int) -> Any:
    """``/plot/{symbol}`` at the bundle's whole horizon; pages cut it to the chosen days."""
    return get(cfg, f"/plot/{symbol_path(symbol)}", history=history)


def metrics(cfg: DashboardConfig, symbol: str) -> Any:
    return get(cfg, f"/metrics/{symbol_path(symbol)}")


def rankings(cfg: DashboardConfig, horizon: int, top: int) -> Any:
    return get(cfg, "/rankings", horizon=horizon, top=top)


def monitoring(cfg: DashboardConfig) -> Any:
    """``/monitoring`` (200, or 503 until the monitor has run: both with a body)."""
    return get(cfg, "/monitoring", accept=(200, 503))
