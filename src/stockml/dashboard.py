"""Start the Streamlit dashboard (``dashboard/streamlit_app.py``) against a prediction API.

The dashboard is a separate app that talks to the API only; this module just launches it,
headless and without usage statistics (it must run offline), passing the API's URL and key in
the environment names the dashboard reads (``STOCKML_DASHBOARD__API_URL``,
``STOCKML_API_KEY``). Used by ``stockml dashboard`` and ``stockml demo``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stockml.local import LocalServer, free_port, wait_http
from stockml.settings import DashboardSettings

HEALTH = "/_stcore/health"


def find_app(root: Path | None = None) -> Path:
    """``dashboard/streamlit_app.py`` of the checkout (or under ``root``).

    Raises:
        FileNotFoundError: no dashboard folder (an installed wheel does not ship it).
    """
    bases = [root] if root else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for base in bases:
        app = base / "dashboard" / "streamlit_app.py"
        if app.is_file():
            return app
    raise FileNotFoundError(
        "dashboard/streamlit_app.py not found: run from the repository checkout"
    )


def streamlit_command(
    app: Path, config: DashboardSettings, api_key: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the dashboard as ``config`` says."""
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.address",
        config.host,
        "--server.port",
        str(config.port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
    ]
    env = {
        **os.environ,
        "STOCKML_DASHBOARD__API_URL": config.api_url,
        "STOCKML_DASHBOARD__TIMEOUT_S": str(config.timeout_s),
        "STOCKML_DASHBOARD__CACHE_TTL_S": str(config.cache_ttl_s),
    }
    if api_key:
        env["STOCKML_API_KEY"] = api_key
    return argv, env


def start_dashboard(
    config: DashboardSettings,
    api_key: str | None = None,
    log: Path | None = None,
    timeout_s: float = 90.0,
) -> LocalServer:
    """Start the dashboard in the background and wait for ``/_stcore/health``.

    ``config.port`` 0 picks a free port. Output goes to ``log`` (default: discarded).
    """
    if not config.port:
        config = config.model_copy(update={"port": free_port()})
    argv, env = streamlit_command(find_app(), config, api_key)
    sink = log.open("ab") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    finally:
        if log:
            sink.close()  # type: ignore[union-attr]
    url = f"http://{config.host}:{config.port}"
    try:
        wait_http(url + HEALTH, timeout_s=timeout_s, process=process)
    except (TimeoutError, RuntimeError):
        process.kill()
        process.wait()
        raise
    return LocalServer(url=url, process=process)
