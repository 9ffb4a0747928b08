"""Load test of the prediction API: uvicorn with several workers, loopback, a minute per endpoint.

    python benchmarks/load.py [--seconds 60] [--workers 4] [--connections 32]

The app is the one the Lambda serves (``functions/api/app.py``), run by ``uvicorn --workers N``
on 127.0.0.1, reading a real small bundle and its feature windows from a local moto_server; no
API key, no rate limit. ``POST /predict/MSFT`` is served from the MSFT bundle of the tests
(tests/utils/serving_bundle.py: Ridge + LSTM, ONNX); ``GET /rankings?top=10`` from a global
bundle trained here on 25 synthetic stocks (tests/utils/universe_bundle.py: rank target, LSTM
and XGBoost), in a second bucket and a second server. The load comes
from ``wrk`` (``apt-get install wrk``; keep-alive connections, every request's latency) when it
is installed, else from a Python keep-alive client that measures the same figures (it drives
fewer requests per second from the same cores).

Endpoints: ``POST /predict/MSFT`` (``{"days": 3}``), then ``GET /rankings?top=10`` (an endpoint
that does not answer 200 is skipped and the reason printed). Each gets a warm-up,
then ``--seconds`` of load. Figures per endpoint: requests per second, p50 and p99 latency,
failed requests (non-2xx answers, socket errors, timeouts). Goal: 0 failed requests. The load
generator shares the machine with the server: on a small machine both compete for its cores.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the bundle builder shared with the tests

from stockml.local import free_port, start_moto_server, wait_http  # noqa: E402

PREDICT = ("POST", "/predict/MSFT", b'{"days": 3}')
RANKINGS = ("GET", "/rankings?top=10", b"")

# wrk reports through this script: the request to send, and one JSON line at the end
_WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = {body!r}
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@contextmanager
def api_server(env: dict[str, str], workers: int) -> Iterator[str]:
    """``functions/api/app.py``'s app under ``uvicorn --workers``; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(REPO / "functions" / "api"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout_s=120, process=process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def probe(url: str, request: tuple[str, str, bytes]) -> str | None:
    """None when ``request`` answers 200, else why not (an endpoint this API may not have)."""
    method, path, body = request
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        text = answer.read()[:200].decode(errors="replace")
    finally:
        conn.close()
    return None if answer.status == 200 else f"{method} {path} answers HTTP {answer.status}: {text}"


def wrk_load(
    url: str, request: tuple[str, str, bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """``seconds`` of ``request`` from wrk (2 threads, ``connections`` keep-alive connections)."""
    method, path, body = request
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.format(method=method, body=body.decode()))
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(connections),
                "-d",
                f"{seconds:.0f}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url + path,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
    }


def python_load(
    url: str, request: tuple[str, str, bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """The same figures from ``connections`` threads, each with one keep-alive connection."""
    method, path, body = request
    split = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status < 400
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            latencies[i].append(time.perf_counter() - t)
            errors[i] += not ok
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return {
        "requests": len(ms),
        "rps": len(ms) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "errors": sum(errors),
    }


def run_load(
    url: str, request: tuple[str, str, bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """A short warm-up (every worker loads its windows), then ``seconds`` of measured load."""
    load = wrk_load if shutil.which("wrk") else python_load
    load(url, request, min(3.0, seconds), connections)
    figures = load(url, request, seconds, connections)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    import boto3

    from stockml.storage import Store
    from utils.serving_bundle import build_bundle, publish
    from utils.universe_bundle import build_universe_bundle

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.pop("STOCKML_API_KEY", None)  # the load is the API's, not the key check's
    tool = "wrk" if shutil.which("wrk") else "python"
    s3 = start_moto_server()
    try:
        bucket = f"load-{uuid.uuid4().hex[:8]}"
        universe_bucket = f"load-{uuid.uuid4().hex[:8]}"
        for name in (bucket, universe_bucket):
            boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1").create_bucket(
                Bucket=name
            )
        with tempfile.TemporaryDirectory() as tmp:
            publish(Store(bucket, endpoint_url=s3.url), build_bundle(Path(tmp) / "bundle"))
            publish(
                Store(universe_bucket, endpoint_url=s3.url),
                build_universe_bundle(Path(tmp) / "universe"),
            )
        env = {
            "STOCKML_STORE__ENDPOINT_URL": s3.url,
            "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
            "STOCKML_API__LOG_LEVEL": "WARNING",
        }
        results: dict[str, Any] = {}
        for name, request, store in (
            ("predict", PREDICT, bucket),
            ("rankings", RANKINGS, universe_bucket),
        ):
            with api_server({**env, "STOCKML_STORE__BUCKET": store}, args.workers) as url:
                why = probe(url, request)
                if why is not None:
                    results[name] = {"skipped": why}
                    print(f"{request[0]} {request[1]}: skipped ({why})")
                    continue
                results[name] = run_load(url, request, args.seconds, args.connections)
                r = results[name]
                print(
                    f"{request[0]} {request[1]}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms, {r['requests']} "
                    f"requests, {r['errors']} failed ({args.seconds:.0f} s, {args.workers} "
                    f"workers, {args.connections} connections, {tool})"
                )
    finally:
        s3.stop()
    errors = sum(r.get("errors", 0) for r in results.values())
    print(f"failed requests: {errors} (goal: 0)")
    print(
        json.dumps(
            {
                "tool": tool,
                "seconds": args.seconds,
                "workers": args.workers,
                "connections": args.connections,
                "cores": os.cpu_count(),
                **results,
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
