"""Where the dashboard finds the API: environment > ``configs/config.yaml`` (``dashboard:``).

The names are the ``stockml`` settings' own: ``STOCKML_DASHBOARD__API_URL``,
``STOCKML_DASHBOARD__TIMEOUT_S``, ``STOCKML_DASHBOARD__CACHE_TTL_S`` and the secret
``STOCKML_API_KEY`` (environment only). A hosted dashboard (a container, App Runner,
Streamlit Community Cloud, whose root-level secrets become environment variables) sets them;
``stockml dashboard`` passes its configured values the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PREFIX = "STOCKML_DASHBOARD__"
API_KEY_ENV = "STOCKML_API_KEY"
CONFIG_DIR_ENV = "STOCKML_CONFIG_DIR"
# the repository's configs/ (dashboard/stockml_dashboard/config.py -> ../../configs)
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class DashboardConfig:
    """What the dashboard needs to reach the API.

    Attributes:
        api_url: the API's base URL, without a trailing slash.
        api_key: sent as ``X-API-Key`` when set.
        timeout_s: per API call.
        cache_ttl_s: how long an API answer is reused (``st.cache_data``).
    """

    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    timeout_s: float = 20.0
    cache_ttl_s: float = 60.0


def _yaml_section(environ: Mapping[str, str]) -> dict[str, Any]:
    folder = environ.get(CONFIG_DIR_ENV)
    candidates = [Path(folder)] if folder else [Path.cwd() / "configs", REPO_CONFIGS]
    for base in candidates:
        path = base / "config.yaml"
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            section = data.get("dashboard") if isinstance(data, dict) else None
            return dict(section) if isinstance(section, dict) else {}
    return {}


def load_config(environ: Mapping[str, str] | None = None) -> DashboardConfig:
    """The configuration from ``environ`` (default ``os.environ``) over the YAML defaults.

    Raises:
        ValueError: a number that does not parse or a URL that is not http(s).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    section = _yaml_section(environ)
    for name in ("api_url", "timeout_s", "cache_ttl_s"):
        raw = environ.get(PREFIX + name.upper(), section.get(name))
        if raw is not None and str(raw).strip():
            values[name] = str(raw).strip() if name == "api_url" else float(raw)
    url = str(values.get("api_url", DashboardConfig.api_url)).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{PREFIX}API_URL must be an http(s) URL, got {url!r}")
    values["api_url"] = url
    key = environ.get(API_KEY_ENV, "").strip()
    return DashboardConfig(api_key=key or None, **values)
