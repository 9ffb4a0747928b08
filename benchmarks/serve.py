"""Serving figures of the prediction API, against a local moto_server and a real small bundle.

1. warm latency through the Lambda handler (Mangum, in-process): ``POST /predict/MSFT``
   beside the trivial ``GET /version`` (p50/p99 and their ratio); plus the model run alone
   (``Predictor.predict``, no cache) to show what a cache miss costs; and the cost of the
   prediction log: /predict p50/p99 of two handlers, one recording every served forecast
   (``api.log_predictions``, the default: buffered, flushed to S3 by a background thread)
   and one not, called in alternating batches so that a noisy neighbour slows both alike,
   with ``PredictionLog.record`` alone and the background flushes' throughput;
2. cold start of a fresh process (import the handler + read and verify the bundle from S3 +
   create the ONNX sessions) beside a bare ``import fastapi, mangum, onnxruntime`` process,
   and where its time goes, step by step; the first request after it (which reads the
   symbol's feature window) is printed with the warm figures;
3. HTTP throughput under uvicorn (``stockml serve``) with a bounded loopback load from a
   Python keep-alive client (fixed duration, fixed threads): /predict vs /version;
4. ``GET /rankings`` of a global bundle over a universe (``--universe FILE``, default the
   398-stock S&P 500 file in ``../shared/data``; skipped without it): the features of every
   symbol by the feature library, each symbol's window and the ONE universe object in the
   store, and a bundle of the configured universe models (``ModelConfig.for_universe()``:
   LSTM, XGBoost, LightGBM and their ensemble, window 60) trained quickly on
   ``--universe-train-symbols`` symbols (serving cost depends on the networks' shapes, the
   trees and the symbols ranked, not on what the models learned; ``--universe-bundle DIR``
   serves a bundle trained by ``stockml train --universe`` instead). Through the handler:
   the first call (one GET of the universe object + the batched run), ``rankings_p99_ms``
   on a forecast-cache miss (the universe object in memory, the model run again each
   request: the goal), and warm calls;
5. the deployment artefact: the API function built as template.yaml ships it (a zip:
   ``sam build PredictionFunction`` with the SAM CLI of ``make sam-venv``, else the same
   functions/Makefile targets run by ``make``; both need the runtime's python3.12), its
   unzipped size (function + layer) against Lambda's 250 MB limit, and the cold start of that
   zip in a bare interpreter of the function's runtime (no site-packages, read-only: the
   bytecode the zip ships is all there is), beside the same bare imports from the zip.

    python benchmarks/serve.py [--requests 2000] [--seconds 3] [--threads 4]
    python benchmarks/serve.py --rankings-only     # part 4 alone

Goals: predict p99 <= 5 ms; cold start <= 2x bare imports; /predict >= 0.5x trivial
throughput; rankings p99 <= 50 ms on a cache miss (moonshot 20 ms); the API a Zip of <= 250 MB
unzipped (moonshot <= 120 MB). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the bundle builder shared with the tests

from stockml.local import free_port, start_moto_server, wait_http  # noqa: E402
from stockml.storage import Store  # noqa: E402
from utils.lambda_artefact import (  # noqa: E402
    SAM,
    ZIP_LIMIT_MB,
    api_runtime,
    find_python,
    make_build,
    sam_build,
    template,
    tree_mb,
)
from utils.serving_bundle import build_bundle, publish  # noqa: E402


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def event(name: str) -> dict:
    return json.loads((REPO / "events" / f"api_{name}_v2.json").read_text())


class Context:
    aws_request_id = "bench"


def load_handler(env: dict[str, str], name: str) -> Any:
    """functions/api/app.py imported in this process (a fresh container) with ``env``."""
    import importlib.util

    os.environ.update(env)
    spec = importlib.util.spec_from_file_location(name, REPO / "functions/api/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logging_cost(env: dict[str, str], n: int) -> dict[str, Any]:
    """/predict with and without the prediction log, interleaved in batches of 100."""
    modules = {
        "off": load_handler({**env, "STOCKML_API__LOG_PREDICTIONS": "false"}, "api_nolog"),
        "on": load_handler({**env, "STOCKML_API__LOG_PREDICTIONS": "true"}, "api_log"),
    }
    log = modules["on"].app.state.serving.service.log
    assert log is not None and modules["off"].app.state.serving.service.log is None
    ev = event("predict")
    samples: dict[str, list[float]] = {"off": [], "on": []}
    for module in modules.values():
        for _ in range(50):  # warm-up
            module.handler(ev, Context())
    for _ in range(max(n // 100, 1)):
        for label, module in modules.items():
            for _ in range(100):
                t = time.perf_counter()
                module.handler(ev, Context())
                samples[label].append(time.perf_counter() - t)
    # the record call alone (what the request path pays), on a forecast from memory
    service = modules["on"].app.state.serving.service
    forecast = service.cached_forecast("MSFT", 3)
    assert forecast is not None
    record = []
    for _ in range(n):
        t = time.perf_counter()
        log.record(forecast, "bench", "predict")
        record.append(time.perf_counter() - t)
    started = time.perf_counter()
    log.close()  # the rest, flushed here
    flush_s = time.perf_counter() - started
    stats = log.stats()
    out: dict[str, Any] = {"log_stats": stats, "final_flush_s": flush_s}
    for label in ("off", "on"):
        out[f"predict_log_{label}_p50_ms"], out[f"predict_log_{label}_p99_ms"] = percentiles(
            samples[label]
        )
    out["record_p50_us"], out["record_p99_us"] = (v * 1000 for v in percentiles(record))
    return out


def handler_latency(env: dict[str, str], n: int) -> dict[str, float]:
    """Warm p50/p99 through the handler, imported in this process, configured as deployed
    (the prediction log on)."""
    module = load_handler(env, "api_app")

    out: dict[str, float] = {}
    for name in ("predict", "version"):
        ev = event(name)
        first = time.perf_counter()
        assert module.handler(ev, Context())["statusCode"] == 200
        out[f"{name}_first_ms"] = 1000 * (time.perf_counter() - first)
        for _ in range(50):  # warm-up
            module.handler(ev, Context())
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            module.handler(ev, Context())
            samples.append(time.perf_counter() - t)
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = percentiles(samples)
    # the model run alone: what a cache miss adds (features already in memory)
    service = module.app.state.serving.service
    rows = service.features.latest("MSFT", service.predictor.rows_needed)
    samples = []
    for _ in range(n // 4):
        t = time.perf_counter()
        service.predictor.predict(rows)
        samples.append(time.perf_counter() - t)
    out["model_run_p50_ms"], out["model_run_p99_ms"] = percentiles(samples)
    if service.log is not None:
        service.log.close()  # what it buffered, written while the store is up
    return out


UNIVERSE_FILE = REPO.parent / "shared/data/prices/daily/sp500-universe/sp500-400-2015-2018.parquet"


def publish_universe(
    store: Store, path: Path, train_symbols: int, bundle_dir: Path | None, workdir: Path
) -> dict[str, Any]:
    """A global bundle as champion, and every symbol's window and the universe object."""
    import pandas as pd

    from stockml.bundle import champion_key, champion_pointer
    from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
    from stockml.model_config import ModelConfig
    from stockml.train import Dataset, train
    from stockml.window import FeatureWindow, UniverseWindow, universe_key, window_key

    table = pd.read_parquet(path)
    config = FeatureConfig.from_yaml()
    counts = table.groupby("symbol").size()
    ready = sorted(counts[counts > config.warmup_rows()].index)
    frame = build_features(
        table[table["symbol"].isin(ready)].assign(source="file"), None, None, config
    )
    names = feature_columns(config)
    if bundle_dir is None:
        keep = ready[:train_symbols]
        data = Dataset(
            frame[frame["symbol"].isin(keep)].reset_index(drop=True),
            names,
            target_columns(config),
            config.model_dump(mode="json"),
        )
        quick = ModelConfig.from_yaml(
            history_sessions=250, evaluation={"n_folds": 1, "test_fraction": 0.2}
        ).for_universe()
        quick.lstm.max_epochs = 1
        bundle_dir = train(data, quick, workdir).bundle_dir
    version = bundle_dir.name
    store.put_folder(bundle_dir, f"{store.models_prefix}/{version}")
    windows = []
    for symbol, rows in frame.groupby("symbol", sort=True):
        window = FeatureWindow.from_frame(rows.tail(config.serving_rows), names)
        store.put_bytes(
            window_key(store.features_prefix, str(symbol), window.last_date), window.to_bytes()
        )
        windows.append(window)
    universe = UniverseWindow.from_windows(windows, config.ranking_rows)
    data = universe.to_bytes()
    store.put_bytes(universe_key(store.features_prefix), data)
    store.put_bytes(champion_key(store.models_prefix), champion_pointer(version, "benchmark"))
    return {"symbols": len(windows), "universe_object_mb": len(data) / 1e6, "version": version}


def rankings_latency(env: dict[str, str], n: int) -> dict[str, float]:
    """``GET /rankings`` through the handler: first call, cache misses, warm calls."""
    import importlib.util

    os.environ.update(env)
    spec = importlib.util.spec_from_file_location("api_app_universe", REPO / "functions/api/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = module.app.state.serving.service
    assert service is not None, module.app.state.serving.error

    class Context:
        aws_request_id = "bench"

    ev = event("rankings")
    out: dict[str, float] = {}
    first = time.perf_counter()
    response = module.handler(ev, Context())
    assert response["statusCode"] == 200, response["body"]
    out["rankings_first_ms"] = 1000 * (time.perf_counter() - first)
    body = json.loads(response["body"])
    out["ranked"] = body["n_ranked"]
    for _ in range(10):  # warm-up of the miss path
        service.clear_ranking()
        module.handler(ev, Context())
    misses = []
    for _ in range(n):
        service.clear_ranking()  # the universe object stays in memory: a forecast-cache miss
        t = time.perf_counter()
        module.handler(ev, Context())
        misses.append(time.perf_counter() - t)
    out["rankings_p50_ms"], out["rankings_p99_ms"] = percentiles(misses)
    warm = []
    for _ in range(n):
        t = time.perf_counter()
        module.handler(ev, Context())
        warm.append(time.perf_counter() - t)
    out["rankings_warm_p50_ms"], out["rankings_warm_p99_ms"] = percentiles(warm)
    # the batched model run alone (scaling + one ONNX run of the ranking model)
    universe = service.features.universe()
    runs = []
    for _ in range(n // 2):
        t = time.perf_counter()
        service.predictor.rank(universe)
        runs.append(time.perf_counter() - t)
    out["rank_run_p50_ms"], out["rank_run_p99_ms"] = percentiles(runs)
    return out


def timed_process(code: str, env: dict[str, str], repeats: int) -> float:
    """Median time from launching a fresh interpreter to the end of ``code``.

    Interpreter start included; its exit is not (a Lambda container does not exit after its
    init, and tearing down ONNX Runtime, threads and modules costs ~0.4 s here): the child
    prints the wall-clock time when ``code`` is done.
    """
    times = []
    for _ in range(repeats):
        t = time.time()
        done = subprocess.run(
            [sys.executable, "-c", f"{code}\nimport time; print(repr(time.time()))"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        times.append(float(done.stdout.strip().splitlines()[-1]) - t)
    return statistics.median(times)


# the handler's cold path, step by step, in the order the handler pays for it (no pandas, no
# botocore session: tests/functional/test_api_handler.py checks that neither is imported)
COLD_STEPS = """
import json, time
marks = [time.perf_counter()]
import fastapi, mangum, onnxruntime
marks.append(time.perf_counter())
from stockml.api import create_app
from stockml.settings import Settings
marks.append(time.perf_counter())
settings = Settings()
marks.append(time.perf_counter())
app = create_app(settings)
marks.append(time.perf_counter())
assert app.state.serving.service is not None, app.state.serving.error
names = ["bare imports", "stockml + app modules", "settings", "bundle load + app"]
print(json.dumps(dict(zip(names, [b - a for a, b in zip(marks, marks[1:])]))))
"""


def cold_start(env: dict[str, str], repeats: int) -> dict[str, Any]:
    full_env = {**os.environ, **env}
    handler = (
        "import importlib.util as u; s = u.spec_from_file_location('app', 'functions/api/app.py'); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); "
        "assert m.app.state.serving.service is not None, m.app.state.serving.error"
    )
    bare = "import fastapi, mangum, onnxruntime"
    # the bare imports read site-packages' bytecode: the handler's own modules get theirs
    # too, as the zip ships it (functions/Makefile), whatever PYTHONDONTWRITEBYTECODE says
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "src/stockml", "functions/api"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    timed_process(bare, full_env, 1)  # warm the OS file cache for both
    # interleaved, so that a noisy neighbour slows both alike
    cold, bare_s = [], []
    for _ in range(repeats):
        cold.append(timed_process(handler, full_env, 1))
        bare_s.append(timed_process(bare, full_env, 1))
    steps = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", COLD_STEPS],
                env=full_env,
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(repeats)
    ]
    return {
        "cold_start_s": statistics.median(cold),
        "bare_import_s": statistics.median(bare_s),
        # where the time goes (medians of each step; interpreter start not included)
        "steps_s": {k: statistics.median(step[k] for step in steps) for k in steps[0]},
    }


def load(
    url_host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    seconds: float,
    threads: int,
) -> float:
    """Requests per second over ``seconds`` from ``threads`` keep-alive connections."""
    done = [0] * threads
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(url_host, port, timeout=30)
        while time.perf_counter() < stop:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}")
            done[i] += 1
        conn.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def throughput(env: dict[str, str], seconds: float, threads: int) -> dict[str, float]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "stockml.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=90, process=process)
        body = json.dumps({"days": 3}).encode()
        load("127.0.0.1", port, "POST", "/predict/MSFT", body, 0.5, threads)  # warm-up
        return {
            "trivial_rps": load("127.0.0.1", port, "GET", "/version", None, seconds, threads),
            "predict_rps": load("127.0.0.1", port, "POST", "/predict/MSFT", body, seconds, threads),
        }
    finally:
        process.terminate()
        process.wait(timeout=15)


def build_artefact(build_dir: Path) -> dict[str, Any]:
    """The API function as template.yaml ships it, built and measured (see the docstring)."""
    props = template()["Resources"]["PredictionFunction"]["Properties"]
    version = api_runtime().removeprefix("python")
    python = find_python(version)
    if python is None:
        raise RuntimeError(f"the API zip is built for python{version}: none is installed here")
    if SAM.is_file():
        done = sam_build(build_dir, python, "PredictionFunction")
        if done.returncode != 0:
            raise RuntimeError(f"sam build failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        method = "sam build"
    else:
        make_build(build_dir, python)
        method = "make -f functions/Makefile (sam build's targets)"
    function, layer = build_dir / "PredictionFunction", build_dir / "StockmlPackageLayer"
    sizes = {
        p.name: tree_mb(p) if p.is_dir() else p.stat().st_size / 1e6 for p in function.iterdir()
    }
    return {
        "package_type": props.get("PackageType", "Zip"),
        "method": method,
        "mb": tree_mb(function) + tree_mb(layer),
        "largest": {k: round(v, 1) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]},
        "python": python,
        "paths": [function, layer / "python"],
    }


def zip_cold_start(artefact: dict[str, Any], env: dict[str, str], repeats: int) -> dict[str, float]:
    """Cold start of the built zip in a bare interpreter (-S: only the zip, the layer, stdlib)."""
    python = artefact["python"]
    function, layer = artefact["paths"]
    path = f"import sys; sys.path[:0] = [{str(function)!r}, {str(layer)!r}]"
    handler = f"{path}\nimport app\nassert app.app.state.serving.service is not None"
    bare = f"{path}\nimport fastapi, mangum, onnxruntime"
    full_env = {
        **os.environ,
        **env,
        "STOCKML_CONFIG_DIR": str(function / "configs"),
        # /var/task is read-only on Lambda: no bytecode is written, the zip's own is used
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def timed(code: str) -> float:
        t = time.time()
        done = subprocess.run(  # noqa: S603 - fixed argv
            [str(python), "-S", "-c", f"{code}\nimport time; print(repr(time.time()))"],
            env=full_env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        return float(done.stdout.strip().splitlines()[-1]) - t

    timed(bare)  # warm the OS file cache
    cold, bare_s = [], []
    for _ in range(repeats):
        cold.append(timed(handler))
        bare_s.append(timed(bare))
    return {"cold_start_s": statistics.median(cold), "bare_import_s": statistics.median(bare_s)}


def universe_rankings(args: argparse.Namespace, server: Any, env: dict[str, str]) -> dict[str, Any]:
    """The ``/rankings`` figures over ``--universe`` (empty when the file is absent)."""
    ranked: dict[str, Any] = {}
    if not args.universe.is_file():
        return ranked
    universe_bucket = f"bench-u-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=universe_bucket
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ranked.update(
            publish_universe(
                Store(universe_bucket, endpoint_url=server.url),
                args.universe,
                args.universe_train_symbols,
                args.universe_bundle,
                Path(tmp),
            )
        )
        ranked["setup_s"] = time.perf_counter() - started
    ranked.update(
        rankings_latency({**env, "STOCKML_STORE__BUCKET": universe_bucket}, args.requests)
    )
    return ranked


def print_rankings(ranked: dict[str, Any], universe: Path) -> None:
    if not ranked:
        print(f"/rankings: skipped ({universe} is absent)")
        return
    print(
        f"/rankings over {ranked['ranked']} of {ranked['symbols']} symbols (universe object "
        f"{ranked['universe_object_mb']:.1f} MB): first call {ranked['rankings_first_ms']:.1f} ms; "
        f"forecast-cache miss p50 {ranked['rankings_p50_ms']:.2f} ms p99 "
        f"{ranked['rankings_p99_ms']:.2f} ms (goal <= 50, moonshot 20); warm p99 "
        f"{ranked['rankings_warm_p99_ms']:.2f} ms; the batched run alone p50 "
        f"{ranked['rank_run_p50_ms']:.2f} ms"
    )


def rankings_json(ranked: dict[str, Any], universe: Path) -> dict[str, Any]:
    return {
        "rankings_p99_ms": round(ranked["rankings_p99_ms"], 3) if ranked else None,
        "rankings": {k: round(v, 3) if isinstance(v, float) else v for k, v in ranked.items()}
        or None,
        **({} if ranked else {"skipped": {"rankings_p99_ms": f"{universe} is absent"}}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--universe", type=Path, default=UNIVERSE_FILE)
    parser.add_argument("--universe-train-symbols", type=int, default=60)
    parser.add_argument("--universe-bundle", type=Path, default=None)
    parser.add_argument(
        "--rankings-only", action="store_true", help="only the /rankings figures (part 4)"
    )
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = start_moto_server()
    if args.rankings_only:
        try:
            ranked = universe_rankings(
                args,
                server,
                {
                    "STOCKML_STORE__ENDPOINT_URL": server.url,
                    "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
                    "STOCKML_API_KEY": "local-test-key",  # the events carry this key
                    "STOCKML_API__LOG_LEVEL": "WARNING",
                },
            )
        finally:
            server.stop()
        print_rankings(ranked, args.universe)
        print(json.dumps(rankings_json(ranked, args.universe)))
        return
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        store = Store(bucket, endpoint_url=server.url)
        with tempfile.TemporaryDirectory() as tmp:
            built = build_bundle(Path(tmp) / "bundle")
            publish(store, built)
        env = {
            "STOCKML_STORE__BUCKET": bucket,
            "STOCKML_STORE__ENDPOINT_URL": server.url,
            "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
            "STOCKML_API_KEY": "local-test-key",  # the events carry this key
            "STOCKML_API__LOG_LEVEL": "WARNING",
        }
        cold = cold_start(env, args.repeats)
        with tempfile.TemporaryDirectory() as tmp:
            artefact = build_artefact(Path(tmp) / "build")
            zip_cold = zip_cold_start(artefact, env, args.repeats)
        # under uvicorn: no key, and the access log at its default level (INFO), as served
        rps = throughput(
            {
                k: v
                for k, v in env.items()
                if k not in ("STOCKML_API_KEY", "STOCKML_API__LOG_LEVEL")
            },
            args.seconds,
            args.threads,
        )
        warm = handler_latency(env, args.requests)
        logged = logging_cost(env, args.requests)
        ranked = universe_rankings(args, server, env)
    finally:
        server.stop()

    p99_ratio = warm["predict_p99_ms"] / warm["version_p99_ms"]
    cold_ratio = cold["cold_start_s"] / cold["bare_import_s"]
    rps_ratio = rps["predict_rps"] / rps["trivial_rps"]
    print(
        f"warm handler  /predict p50 {warm['predict_p50_ms']:.3f} ms  p99 {warm['predict_p99_ms']:.3f} ms "
        f"(first call {warm['predict_first_ms']:.1f} ms)"
    )
    print(
        f"warm handler  /version p50 {warm['version_p50_ms']:.3f} ms  p99 {warm['version_p99_ms']:.3f} ms"
    )
    print(f"  predict/trivial p99 ratio {p99_ratio:.2f}   (goal: predict p99 <= 5 ms)")
    print(
        f"prediction log: /predict p50 {logged['predict_log_on_p50_ms']:.3f} ms p99 "
        f"{logged['predict_log_on_p99_ms']:.3f} ms with it, p50 {logged['predict_log_off_p50_ms']:.3f} ms "
        f"p99 {logged['predict_log_off_p99_ms']:.3f} ms without (alternating batches); "
        f"record() alone p50 {logged['record_p50_us']:.1f} us p99 {logged['record_p99_us']:.1f} us; "
        f"{logged['log_stats']['written']} records written, {logged['log_stats']['failed_puts']} "
        f"failed PUTs"
    )
    print(
        f"model run alone (cache miss, 2 ONNX models + ensemble) p50 {warm['model_run_p50_ms']:.3f} ms "
        f"p99 {warm['model_run_p99_ms']:.3f} ms"
    )
    print(
        f"cold start {cold['cold_start_s']:.3f} s vs bare imports {cold['bare_import_s']:.3f} s: "
        f"ratio {cold_ratio:.2f} (goal <= 2)"
    )
    print("  cold path by step: " + ", ".join(f"{k} {v:.3f} s" for k, v in cold["steps_s"].items()))
    print(
        f"HTTP ({args.threads} threads, {args.seconds:.0f} s): /predict {rps['predict_rps']:.0f} req/s, "
        f"/version {rps['trivial_rps']:.0f} req/s: ratio {rps_ratio:.2f} (goal >= 0.5)"
    )
    print_rankings(ranked, args.universe)
    print(
        f"artefact ({artefact['method']}): {artefact['package_type']}, {artefact['mb']:.0f} MB "
        f"unzipped, function + layer (limit {ZIP_LIMIT_MB} MB); largest {artefact['largest']}"
    )
    print(
        f"cold start of the zip (bare python{api_runtime()[6:]} -S): "
        f"{zip_cold['cold_start_s']:.3f} s vs its bare imports {zip_cold['bare_import_s']:.3f} s"
    )
    print(
        json.dumps(
            {
                "predict_first_ms": round(warm["predict_first_ms"], 2),
                "predict_p50_ms": round(warm["predict_p50_ms"], 4),
                "predict_p99_ms": round(warm["predict_p99_ms"], 4),
                "trivial_p50_ms": round(warm["version_p50_ms"], 4),
                "trivial_p99_ms": round(warm["version_p99_ms"], 4),
                "predict_to_trivial_p99_ratio": round(p99_ratio, 3),
                "predict_log_on_p50_ms": round(logged["predict_log_on_p50_ms"], 4),
                "predict_log_on_p99_ms": round(logged["predict_log_on_p99_ms"], 4),
                "predict_log_off_p50_ms": round(logged["predict_log_off_p50_ms"], 4),
                "predict_log_off_p99_ms": round(logged["predict_log_off_p99_ms"], 4),
                "predict_log_p99_ratio": round(
                    logged["predict_log_on_p99_ms"] / logged["predict_log_off_p99_ms"], 3
                ),
                "record_p50_us": round(logged["record_p50_us"], 2),
                "record_p99_us": round(logged["record_p99_us"], 2),
                "log_records_written": logged["log_stats"]["written"],
                "log_failed_puts": logged["log_stats"]["failed_puts"],
                "model_run_p50_ms": round(warm["model_run_p50_ms"], 4),
                "model_run_p99_ms": round(warm["model_run_p99_ms"], 4),
                "cold_start_s": round(cold["cold_start_s"], 3),
                "bare_import_s": round(cold["bare_import_s"], 3),
                "cold_start_ratio": round(cold_ratio, 3),
                "cold_steps_s": {k: round(v, 3) for k, v in cold["steps_s"].items()},
                "predict_rps": round(rps["predict_rps"], 1),
                "trivial_rps": round(rps["trivial_rps"], 1),
                "throughput_ratio": round(rps_ratio, 3),
                "artefact_mb": round(artefact["mb"], 1),
                "package_type": artefact["package_type"],
                "artefact_within_zip_limit": artefact["mb"] <= ZIP_LIMIT_MB,
                "zip_cold_start_s": round(zip_cold["cold_start_s"], 3),
                "zip_bare_import_s": round(zip_cold["bare_import_s"], 3),
                "zip_cold_start_ratio": round(
                    zip_cold["cold_start_s"] / zip_cold["bare_import_s"], 3
                ),
                **rankings_json(ranked, args.universe),
            }
        )
    )


if __name__ == "__main__":
    main()
