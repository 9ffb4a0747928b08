"""A SIGTERM to a ``stockml`` command stops the servers the command started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stockml.local import port_in_use

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


def test_sigterm_to_a_command_stops_the_servers_it_started() -> None:
    # GIVEN a command that started a moto_server child and is using it
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", HOLDER],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = urlsplit(process.stdout.readline().strip()).port
        assert port is not None and port_in_use(port)
        # WHEN a process manager stops the command: SIGTERM to its process only
        os.kill(process.pid, signal.SIGTERM)
        # THEN the command exits as terminated (128 + 15) ...
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        # ... and the server it started is gone with it, not left running as an orphan
        deadline = time.monotonic() + 10
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_in_use(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
