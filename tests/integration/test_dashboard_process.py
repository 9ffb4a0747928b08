"""``stockml dashboard`` as a process manager sees it: stopping the command stops the server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockml.local import free_port, port_in_use, wait_http

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_stopping_stockml_dashboard_stops_its_streamlit_server() -> None:
    # GIVEN `stockml dashboard` serving on a free port (the page needs no API to be served)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "stockml.cli", "dashboard", "--api-url", "http://127.0.0.1:9",
         "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=90, process=process)
        # WHEN a process manager stops it: SIGTERM to the process it started
        process.terminate()
        process.wait(timeout=15)
        # THEN no Streamlit server outlives the command: the port is free again
        deadline = time.monotonic() + 10
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_in_use(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
