"""Local stand-ins for the cloud, for the CLI's local mode and the tests: a moto S3 server."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status), or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@dataclass
class LocalServer:
    """A server process started on loopback; ``stop()`` ends it."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_moto_server(port: int | None = None) -> LocalServer:
    """Start ``moto_server`` (real HTTP S3 API) on 127.0.0.1 and wait until it answers."""
    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", process=process)
    logger.info("moto_server listening on %s", url)
    return LocalServer(url=url, process=process)
