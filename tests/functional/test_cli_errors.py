"""The CLI a newcomer meets: every mistake is one line and exit code 2; local mode is safe.

Most cases run the real command in-process (typer's runner); the console script itself is run
as a subprocess for the exit code and the exact stderr a shell sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from stockml import cli
from stockml.local import LocalServer, free_port

pytestmark = pytest.mark.integration

runner = CliRunner()
NO_AWS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}
STOCKML = Path(sys.executable).with_name("stockml")


def _listening(port: int) -> bool:
    """Whether a server accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder without local state, and no store endpoint in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKML_STORE__ENDPOINT_URL", raising=False)
    return tmp_path


def _one_line_error(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    """The error line of a failed command, after checking it is the only thing printed."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout.strip() == ""
    return str(lines[0])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ingest", "--provider", "nope", "--symbols", "MSFT"], "unknown provider 'nope'"),
        (["ingest", "--provider", "csv", "--symbols", "MSFT"], "--path on the command line"),
        (["ingest", "--path", "no/such/folder", "--symbols", "MSFT"], "is not a folder"),
        (["ingest", "--start", "2024-13-01"], "--start '2024-13-01' is not a date"),
        (["ingest", "--start", "yesterday"], "--start 'yesterday' is not a date"),
        (["ingest", "--symbols", "A" * 300], "(300 characters)"),
        (["ingest", "--symbols", "MSFT,../OUTSIDE", "--path", "."], "invalid symbol '../OUTSIDE'"),
        (["ingest", "--symbols", "ÄPFEL"], "invalid symbol 'ÄPFEL'"),
        (["store", "show", "msft"], "did you mean 'MSFT'"),
        (["features", "--symbols", "A/B"], "invalid symbol 'A/B'"),
        (["demo", "--symbol", "msft"], "invalid symbol 'msft'"),
        (["ingest", "--bogus"], "No such option: --bogus"),
        (["store", "show"], "Missing argument 'symbol'"),
        (["local", "up", "--port", "http"], "Invalid value for '--port'"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(workdir: Path, args: list[str], says: str) -> None:
    # GIVEN / WHEN a command with one mistake
    result = runner.invoke(cli.app, args)
    # THEN one line on stderr says what is wrong, exit code 2, no traceback
    assert says in _one_line_error(result)


def test_no_aws_credentials_is_one_line_and_exit_2(workdir: Path, moto_server: LocalServer) -> None:
    # GIVEN a machine without AWS credentials, and a store endpoint (not the local mode)
    env = {**NO_AWS, "STOCKML_STORE__ENDPOINT_URL": moto_server.url, "AWS_PROFILE": None}
    for args in (["store", "ls"], ["ingest", "--provider", "sample", "--symbols", "MSFT"]):
        # WHEN a command that needs S3 runs
        result = runner.invoke(cli.app, args, env=env)
        # THEN it says so in one line, and how to get a local S3
        assert "no AWS credentials found" in _one_line_error(result)
        assert "stockml local up" in result.stderr


def test_an_unreachable_store_and_a_bad_setting_are_one_line(workdir: Path) -> None:
    # GIVEN an endpoint nobody listens on / WHEN / THEN
    down = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(cli.app, ["store", "ls"], env={"STOCKML_STORE__ENDPOINT_URL": down})
    assert f"cannot reach S3 at {down}" in _one_line_error(result)
    # AND a setting of the wrong type names the setting
    result = runner.invoke(cli.app, ["store", "ls"], env={"STOCKML_INGEST__BATCH_SIZE": "many"})
    assert "invalid configuration: ingest.batch_size" in _one_line_error(result)


def test_the_console_script_prints_one_line_and_a_traceback_only_with_verbose(
    workdir: Path,
) -> None:
    # GIVEN the installed ``stockml`` command in a shell without AWS credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOCKML_"))}
    # WHEN it is given an unknown provider, and the same with --verbose
    plain = subprocess.run(
        [STOCKML, "ingest", "--provider", "nope"], capture_output=True, text=True, env=env
    )
    verbose = subprocess.run(
        [STOCKML, "--verbose", "ingest", "--provider", "nope"],
        capture_output=True,
        text=True,
        env=env,
    )
    # THEN the plain run prints exactly one line and exits 2
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.splitlines() == [
        "error: unknown provider 'nope'; known: "
        "['yfinance', 'alpha_vantage', 'polygon', 'csv', 'parquet', 'sample']"
    ]
    # AND --verbose shows where it came from
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr + verbose.stdout
    assert "ConfigError" in verbose.stderr + verbose.stdout


# --- stockml local up / down --------------------------------------------------------------


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without AWS credentials (restored after the test)."""
    for key in NO_AWS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def local_up(workdir: Path, no_aws: None) -> Iterator[int]:
    """The port for ``stockml local up``; whatever the test started there is stopped after."""
    port = free_port()
    yield port
    runner.invoke(cli.app, ["local", "down"])


def test_local_up_needs_no_aws_credentials_and_down_stops_its_server(
    workdir: Path, local_up: int
) -> None:
    # GIVEN a machine without AWS credentials
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    # WHEN the local S3 is started, the sample data ingested into it, and the store listed
    up = runner.invoke(cli.app, ["local", "up", "--port", str(local_up)])
    ingested = runner.invoke(
        cli.app, ["ingest", "--provider", "sample", "--symbols", "^VIX", "--start", "2018-12-01"]
    )
    listed = runner.invoke(cli.app, ["store", "ls"])
    # THEN each works
    assert up.exit_code == 0, up.output
    assert ingested.exit_code == 0, ingested.output
    assert listed.exit_code == 0 and "^VIX" in listed.output
    pid = json.loads((workdir / ".stockml" / "local.json").read_text())["pid"]
    # AND ``down`` stops exactly that server: the process is gone and its port free
    down = runner.invoke(cli.app, ["local", "down"])
    assert down.exit_code == 0 and "stopped" in down.output
    assert not _running(pid)
    assert not _listening(local_up)


def test_local_up_refuses_a_port_in_use(
    workdir: Path, no_aws: None, moto_server: LocalServer
) -> None:
    # GIVEN another server (the tests' own moto_server) on a port
    port = int(moto_server.url.rsplit(":", 1)[1])
    # WHEN ``local up`` is asked for that port
    result = runner.invoke(cli.app, ["local", "up", "--port", str(port)])
    # THEN it refuses in one line, remembers nothing, and the other server is untouched
    assert f"port {port} on 127.0.0.1 is already in use" in _one_line_error(result)
    assert not (workdir / ".stockml" / "local.json").exists()
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert "stockml-local" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_a_failed_local_up_leaves_no_server_running(
    workdir: Path, local_up: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bucket name S3 refuses (too short)
    monkeypatch.setenv("STOCKML_STORE__BUCKET", "x")
    # WHEN ``local up`` starts its server and then fails to create the bucket
    result = runner.invoke(cli.app, ["local", "up", "--port", str(local_up)])
    # THEN it says why in one line, and the server it started is gone again
    assert "InvalidBucketName" in _one_line_error(result)
    assert not _listening(local_up)
    assert not (workdir / ".stockml" / "local.json").exists()


def test_local_down_stops_only_the_server_it_started(workdir: Path) -> None:
    # GIVEN a state file whose pid now belongs to another process (the pid was reused)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (workdir / ".stockml").mkdir()
        (workdir / ".stockml" / "local.json").write_text(
            json.dumps({"endpoint_url": "http://127.0.0.1:5055", "pid": other.pid, "bucket": "b"})
        )
        # WHEN ``local down`` runs
        result = runner.invoke(cli.app, ["local", "down"])
        # THEN that process is left alone and the stale state is cleared
        assert result.exit_code == 0, result.output
        with pytest.raises(subprocess.TimeoutExpired):  # still running a second later
            other.wait(timeout=1)
        assert not (workdir / ".stockml" / "local.json").exists()
    finally:
        other.kill()
        other.wait()


def test_a_port_held_by_a_plain_socket_is_in_use() -> None:
    from stockml.local import port_in_use

    # GIVEN / WHEN a socket listening on a port  THEN it is in use; once closed it is free
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)
