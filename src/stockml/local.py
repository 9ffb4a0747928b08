"""Local stand-ins for the cloud, for the CLI's local mode and the tests: moto S3, an MLflow server."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers (any HTTP status), or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server exited with code {process.returncode} before {url} answered"
            )
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only  # nosec B310
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


def start_moto_server(port: int | None = None, detach: bool = False) -> LocalServer:
    """Start ``moto_server`` (real HTTP S3 API) on 127.0.0.1 and wait until it answers.

    ``detach=True`` starts it in its own session so it outlives the calling process
    (``stockml local up``).
    """
    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=detach,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", process=process)
    logger.info("moto_server listening on %s", url)
    return LocalServer(url=url, process=process)


def start_mlflow_server(
    root: Path, port: int | None = None, timeout_s: float = 90.0
) -> LocalServer:
    """Start an MLflow tracking server (SQLite backend, artifacts under ``root``) on 127.0.0.1.

    One uvicorn worker: the default four (plus a job runner) crowd a small machine.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    # the child keeps its own copy of the log handle; the parent's closes with the block
    with (root / "server.log").open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--default-artifact-root",
                artifacts.as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", timeout_s=timeout_s, process=process)
    logger.info("mlflow server listening on %s", url)
    return LocalServer(url=url, process=process)
