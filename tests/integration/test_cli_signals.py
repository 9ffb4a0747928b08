"""Stopping a ``stockml`` command (SIGTERM, as a process manager does) stops the servers the
command started: none is left running as an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stockml.local import free_port, port_in_use, wait_http

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

# the real root command, with one more command that holds a moto_server as `stockml demo`
# holds its servers: started, used, stopped in a finally
HOLDER = textwrap.dedent(
    """
    import time
    from stockml.cli import app
    from stockml.local import start_moto_server

    @app.command("hold")
    def hold() -> None:
        server = start_moto_server()
        try:
            print(server.url, flush=True)
            while True:
                time.sleep(0.05)
        finally:
            server.stop()

    app(["hold"])
    """
)


def stop_and_wait(process: subprocess.Popen[str], port: int) -> int:
    """SIGTERM to ``process`` alone; its exit code, once nothing listens on ``port`` any more
    (or 10 s have passed: the caller's assertion on ``port_in_use`` then fails)."""
    os.kill(process.pid, signal.SIGTERM)
    code = process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return code


Start = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def run() -> Iterator[Start]:
    """Start a command (argv); every one started is killed at teardown if still running."""
    started: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, *argv],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_to_a_command_stops_the_servers_it_started(run: Start) -> None:
    # GIVEN a command that started a moto_server child and is using it
    process = run("-c", HOLDER)
    assert process.stdout is not None
    port = urlsplit(process.stdout.readline().strip()).port
    assert port is not None and port_in_use(port)
    # WHEN a process manager stops the command: SIGTERM to its process only
    code = stop_and_wait(process, port)
    # THEN the command exits as terminated (128 + 15), and the server it started is gone
    assert code == 128 + signal.SIGTERM
    assert not port_in_use(port)


def test_stopping_stockml_dashboard_stops_its_streamlit_server(run: Start) -> None:
    # GIVEN `stockml dashboard` serving on a free port (the page needs no API to be served)
    port = free_port()
    process = run("-m", "stockml.cli", "dashboard", "--api-url", "http://127.0.0.1:9",
                  "--port", str(port))  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=90, process=process)
    # WHEN a process manager stops it
    stop_and_wait(process, port)
    # THEN no Streamlit server outlives the command: the port is free again
    assert not port_in_use(port)
