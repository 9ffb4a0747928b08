"""Local stand-ins for the cloud, for the CLI's local mode and the tests: moto S3, an MLflow server."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stockml.errors import ConfigError

logger = logging.getLogger(__name__)

#: what a client of a local moto_server signs with (moto accepts any credentials; these keep
#: a machine's real ones from being sent to it, and let a machine without any use it)
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout_s: float = 60.0, process: subprocess.Popen[Any] | None = None
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


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server already listens on ``host:port`` (a bind to it fails)."""
    with socket.socket() as s:
        # as servers bind: a port left in TIME_WAIT by a stopped server is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def start_moto_server(port: int | None = None, detach: bool = False) -> LocalServer:
    """Start ``moto_server`` (real HTTP S3 API) on 127.0.0.1 and wait until it answers.

    ``detach=True`` starts it in its own session so it outlives the calling process
    (``stockml local up``). If it does not come up, it is stopped before the error is raised.

    Raises:
        ConfigError: ``port`` is already in use (another server would answer in its place).
        RuntimeError / TimeoutError: the server exited or did not answer.
    """
    if port and port_in_use(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is already in use; choose another with --port")
    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=detach,
    )
    server = LocalServer(url=f"http://127.0.0.1:{port}", process=process)
    try:
        wait_http(server.url + "/moto-api/", process=process)
        if process.poll() is not None:  # what answered is not this process
            raise RuntimeError(f"moto_server exited with code {process.returncode}")
    except BaseException:
        server.stop()
        raise
    logger.info("moto_server listening on %s", server.url)
    return server


def is_moto_server(pid: int, url: str) -> bool:
    """True when process ``pid`` is a running moto_server serving the port of ``url``.

    Checked from the process's command line (``/proc`` on Linux, ``ps`` elsewhere), so a pid
    that the system has since given to another process is not taken for the server.
    """
    argv = process_argv(pid)
    if argv is None or "moto.server" not in argv:
        return False
    port = str(urlsplit(url).port)
    return any(a == "-p" and b == port for a, b in zip(argv, argv[1:], strict=False))


def process_argv(pid: int) -> list[str] | None:
    """The command line of process ``pid`` (None when there is no such process)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None
    found = subprocess.run(  # noqa: S603 - fixed argv
        ["ps", "-p", str(pid), "-o", "command="],  # noqa: S607 - ps from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.split() or None


def stop_process(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM process ``pid`` and wait until it is gone (SIGKILL after ``timeout_s``)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    # our own child (the tests run ``local up`` in-process): reap it, a zombie is not alive
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return process_argv(pid) is not None


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
