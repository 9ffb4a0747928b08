"""Training time per model and ONNX Runtime vs native inference latency, on the sample data;
with ``--universe PATH``, the LSTM's fit throughput over a universe against a bare torch loop.

Data: the embedded MSFT history (pmdarima, up to 2017-11-10) with ^GSPC/^IXIC/^VIX context
(arch), through the real feature library (configs/feature_config.yaml). Models: the
configuration of configs/model_config.yaml (window, hidden size, trees), fitted once each on
the last ``--rows`` sessions (last 15% for early stopping).

Latency is measured with ONE thread on both sides (torch.set_num_threads(1), ORT
intra_op_num_threads=1, xgboost nthread=1, lightgbm num_threads=1), median of repeated calls,
native = each library's fastest call (torch no_grad forward, XGBoost ``inplace_predict``,
LightGBM ``Booster.predict``), one call per horizon booster for the trees.
``onnx_ensemble_single_row_speedup`` = sum of native single-row latencies of all ensemble
members / sum of their ORT single-row latencies.

    python benchmarks/train.py                     # CPU, ~minutes here
    python benchmarks/train.py --device cuda       # training on a GPU (latency stays on CPU)

Universe mode (``--universe FILE``: one multi-symbol price table, e.g. the 398-stock S&P 500
file): features of the first ``--symbols`` symbols through the feature library (no market
series, no news; the cross-sections over every symbol of the file), windows of the configured
length as the training job builds them, with model_config.yaml's universe mode
(``ModelConfig.for_universe()``: its LSTM batch and epochs), then

- ``project``: ``LSTMModel.fit`` as the job calls it (model_config.yaml's network, a batch of
  ``--batch-size``), run for exactly ``--epochs`` epochs (early stopping off), timed from
  host arrays to fitted model;
- ``bare``: the shortest torch loop of the same shapes (same network, batch, epochs,
  validation pass, bf16 autocast and loss scaling on CUDA), its windows materialised on the
  device BEFORE the clock starts (``bare_upload_seconds``, not counted), no early stopping,
  no copies of the best weights: what the hardware gives the loop alone;
- ``gpu_loop_ratio`` = project samples/s / bare samples/s (goal >= 0.75);
- with ``--cpu-epochs N`` on a GPU host, the project fit on the same host's CPU too, on the
  first ``--cpu-windows`` windows (``lstm_gpu_speedup`` = GPU samples/s / CPU samples/s);
- ``job``: the whole universe training job, ``stockml.train.train`` as ``stockml train
  --universe`` runs it after loading the store (walk-forward: 3 folds of fit, early stopping
  on the validation rank IC, calibration and refit; the final fit on all history; ONNX export
  with parity; the gate; the bundle folder), timed on ``--device`` (``job_seconds``, goal
  <= 5 min on one H200), with each model's fit seconds and the cross-sectional figures;
- ``gpu_speedup`` (goal >= 5) = the same job on the host's CPU / on the GPU. Only the LSTM's
  training runs on the GPU (the trees train on the CPU either way: xgboost ``device="cuda"``
  where the installed wheel has CUDA, and the GPU machine's is the CPU wheel; LightGBM's
  wheel has no CUDA), so the CPU job is the GPU job with the LSTM's training seconds scaled
  by ``lstm_gpu_speedup`` (measured above on the same windows, network and batch):
  ``cpu_job_seconds_estimated``. ``--cpu-job-symbols N`` also runs the whole job on both
  devices for the first N symbols and reports that measured ratio (``gpu_speedup_measured``).
  On a host without CUDA the job runs on the CPU and the GPU fields are null.

``*_process_seconds`` are the process's CPU time: on a shared CPU-only machine the wall clock
includes waiting for a core, so compare those there.

    python benchmarks/train.py --universe FILE --symbols 40            # CPU, here
    python benchmarks/train.py --universe FILE --device cuda --cpu-epochs 1
    python benchmarks/train.py --universe FILE --symbols 30 --job-only  # CI: the job, small

The LSTM part needs torch, numpy, pandas, pyarrow, scipy, onnx and the feature library's
pydantic, pydantic-settings and pyyaml; the job also xgboost, lightgbm, onnxmltools,
skl2onnx, onnxruntime and exchange-calendars (the bundle's session table); not mlflow or ta.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import numpy as np
import pandas as pd


def median_us(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in microseconds (after a few warm-up calls)."""
    for _ in range(min(10, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e3


def native_call(model: Any, torch: Any) -> Callable[[np.ndarray], object]:
    """The library's fastest one-thread call for ``model`` (one call per horizon booster)."""
    if model.name == "lstm":
        net = model.net_

        def forward(x: np.ndarray) -> object:
            with torch.no_grad():
                return net(torch.from_numpy(x)).numpy()

        return forward
    if model.name == "xgboost":
        for booster in model.boosters_:
            booster.set_param({"nthread": 1})
        return lambda x: [b.inplace_predict(x) for b in model.boosters_]
    return lambda x: [b.predict(x, num_threads=1) for b in model.boosters_]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (training device)")
    parser.add_argument("--rows", type=int, default=3000, help="sessions of MSFT to train on")
    parser.add_argument("--repeats", type=int, default=300, help="calls per single-row latency")
    parser.add_argument("--batch", type=int, default=256, help="rows per batch latency")
    parser.add_argument("--epochs", type=int, default=None, help="override lstm.max_epochs")
    parser.add_argument("--universe", default=None, help="a multi-symbol price table (LSTM mode)")
    parser.add_argument("--symbols", type=int, default=None, help="universe: the first N symbols")
    parser.add_argument("--batch-size", type=int, default=None, help="universe: lstm batch size")
    parser.add_argument("--cpu-epochs", type=int, default=0, help="universe: also fit on the CPU")
    parser.add_argument(
        "--cpu-windows", type=int, default=50_000, help="universe: windows of the CPU fit"
    )
    parser.add_argument("--job-only", action="store_true", help="universe: the job alone")
    parser.add_argument("--no-job", action="store_true", help="universe: the LSTM loop alone")
    parser.add_argument(
        "--cpu-job-symbols",
        type=int,
        default=0,
        help="universe: the job on both devices, N symbols",
    )
    parser.add_argument("--out", default=None, help="universe: also write the JSON here")
    parser.add_argument(
        "--models", default=None, help="universe job: comma-separated models (default: config)"
    )
    args = parser.parse_args()
    if args.universe:
        universe_main(args)
        return

    import onnxruntime as ort
    import torch
    import xgboost

    from stockml.bundle import FeatureSpec
    from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
    from stockml.model_config import ModelConfig
    from stockml.models import model_entry
    from stockml.providers.sample import SampleProvider
    from stockml.train import build_models, clean_frame, make_samples

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    overrides: dict[str, object] = {"device": device}
    config = ModelConfig.from_yaml(**overrides)
    if args.epochs is not None:
        config.lstm.max_epochs = args.epochs

    # ---- data: real features of the embedded sample
    sample = SampleProvider()
    start, end = date(1999, 1, 1), date(2017, 11, 10)
    bars = sample.fetch_bars("MSFT", start, end)
    market = pd.concat(
        [sample.fetch_bars(s, start, end) for s in ("^GSPC", "^IXIC", "^VIX")], ignore_index=True
    )
    feature_config = FeatureConfig.from_yaml()
    names, targets = feature_columns(feature_config), target_columns(feature_config)
    frame = clean_frame(build_features(bars, market, None, feature_config), names, targets).tail(
        args.rows
    )
    frame = frame[np.isfinite(frame[targets].to_numpy()).all(axis=1)]
    cut = frame["date"].iloc[int(len(frame) * 0.85)]
    spec = FeatureSpec.fit(
        frame[frame["date"] < cut], names, window=config.window, horizon=len(targets)
    )
    samples = make_samples(frame, spec, targets)
    fit, val = samples.take(samples.dates < cut), samples.take(samples.dates >= cut)
    print(
        f"device={device} torch={torch.__version__} xgboost={xgboost.__version__} ort={ort.__version__} "
        f"python={platform.python_version()} rows fit={len(fit)} val={len(val)} features={len(names)} "
        f"window={config.window} horizon={len(targets)}"
    )

    # ---- training time per model (training may use every core / the GPU)
    fit_seconds: dict[str, float] = {}
    models = {}
    for model in build_models(config):
        started = time.perf_counter()
        model.fit(fit.x(model), fit.y, val.x(model), val.y)
        fit_seconds[model.name] = time.perf_counter() - started
        models[model.name] = model
        print(f"fit {model.name:9s} {fit_seconds[model.name]:8.2f} s")

    # ---- latency: one thread everywhere
    torch.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    latency: dict[str, dict[str, float]] = {}
    parity: dict[str, float] = {}
    for name, model in models.items():
        x_all = np.ascontiguousarray(val.x(model), np.float32)
        reps = int(np.ceil(args.batch / len(x_all)))
        batch = np.ascontiguousarray(np.concatenate([x_all] * reps)[: args.batch])
        one = np.ascontiguousarray(batch[:1])
        entry = model_entry(model)
        session = ort.InferenceSession(model.to_onnx(), options, providers=["CPUExecutionProvider"])
        native = native_call(model, torch)

        def onnx(x: np.ndarray, session=session, entry=entry) -> object:
            return session.run([entry.output_name], {entry.input_name: x})[0]

        parity[name] = float(
            np.abs(np.asarray(onnx(batch), np.float64) - model.predict(batch)).max()
        )
        few = max(args.repeats // 10, 5)
        latency[name] = {
            "native_single_us": median_us(partial(native, one), args.repeats),
            "onnx_single_us": median_us(partial(onnx, one), args.repeats),
            "native_batch_us": median_us(partial(native, batch), few),
            "onnx_batch_us": median_us(partial(onnx, batch), few),
        }
        lat = latency[name]
        print(
            f"latency {name:9s} single native {lat['native_single_us']:9.1f} us  onnx {lat['onnx_single_us']:9.1f} us"
            f" | batch {args.batch} native {lat['native_batch_us']:10.1f} us  onnx {lat['onnx_batch_us']:10.1f} us"
            f" | parity max {parity[name]:.2e}"
        )
    native_sum = sum(v["native_single_us"] for v in latency.values())
    onnx_sum = sum(v["onnx_single_us"] for v in latency.values())
    result = {
        "device": device,
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "rows_fit": len(fit),
        "rows_val": len(val),
        "n_features": len(names),
        "window": config.window,
        "horizon": len(targets),
        "fit_seconds": fit_seconds,
        "lstm_epochs": len(models["lstm"].history_) if "lstm" in models else None,
        "latency_us": latency,
        "onnx_parity_max_abs": parity,
        "native_ensemble_single_row_us": native_sum,
        "onnx_ensemble_single_row_us": onnx_sum,
        "onnx_ensemble_single_row_speedup": native_sum / onnx_sum,
    }
    print(json.dumps(result))


# ------------------------------------------------------------------------ universe mode


def universe_samples(
    path: str, symbols: int | None, window: int
) -> tuple[Any, Any, dict[str, Any]]:
    """Fit and validation samples of a universe file, as the training job builds them."""
    from stockml.bundle import FeatureSpec
    from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
    from stockml.train import clean_frame, make_samples

    table = pd.read_parquet(path) if not path.endswith(".csv") else pd.read_csv(path)
    table = table.rename(columns=str.lower).rename(columns={"adj close": "adj_close"})
    config = FeatureConfig.from_yaml()
    counts = table.groupby("symbol").size()
    keep = sorted(counts[counts > config.warmup_rows() + window].index)[:symbols]
    bars = table[table["symbol"].isin(keep)].assign(source="file")
    started = time.perf_counter()
    frame = build_features(bars, None, None, config)
    feature_seconds = time.perf_counter() - started
    names, targets = feature_columns(config), target_columns(config)
    frame = clean_frame(frame, names, targets)
    frame = frame[np.isfinite(frame[targets].to_numpy()).all(axis=1)]
    days = np.sort(frame["date"].unique())
    cut = days[int(len(days) * 0.85)]
    spec = FeatureSpec.fit(frame[frame["date"] < cut], names, window=window, horizon=len(targets))
    samples = make_samples(frame, spec, targets)
    info = {
        "symbols": len(keep),
        "bars": len(bars),
        "feature_rows": len(frame),
        "n_features": len(names),
        "horizon": len(targets),
        "features_seconds": feature_seconds,
    }
    return samples.take(samples.dates < cut), samples.take(samples.dates >= cut), info


def project_fit(
    config: Any, device: str, epochs: int, batch: int, fit: Any, val: Any
) -> tuple[float, Any]:
    """Seconds of ``LSTMModel.fit`` for exactly ``epochs`` epochs, and the fitted model."""
    import torch

    from stockml.model_config import RuntimeConfig
    from stockml.models import LSTMModel

    model = LSTMModel(
        config.lstm.model_copy(
            update={"max_epochs": epochs, "patience": epochs + 1, "batch_size": batch}
        ),
        RuntimeConfig(seed=config.seed, device=device),
    )
    started = time.perf_counter()
    model.fit(fit.sequence, fit.y, val.sequence, val.y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, model


def bare_fit(
    config: Any, device: str, epochs: int, batch: int, fit: Any, val: Any
) -> tuple[float, float]:
    """The shortest torch loop of the same shapes (see the module docstring).

    Returns the seconds of its epochs (data already on the device: the loop alone) and the
    seconds it took to materialise and upload its windows beforehand.
    """
    import contextlib

    import torch
    from torch import nn

    lstm_config = config.lstm
    cuda = device.startswith("cuda")
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    x = torch.as_tensor(np.asarray(fit.sequence), device=device)
    y = torch.as_tensor(fit.y, dtype=torch.float32, device=device)
    xv = torch.as_tensor(np.asarray(val.sequence), device=device)
    yv = torch.as_tensor(val.y, dtype=torch.float32, device=device)
    lstm = nn.LSTM(x.shape[2], lstm_config.hidden_size, lstm_config.num_layers, batch_first=True)
    head = nn.Linear(lstm_config.hidden_size, y.shape[1])
    lstm, head = lstm.to(device), head.to(device)
    params = [*lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=lstm_config.learning_rate, fused=True if cuda else None)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    )
    if cuda:
        torch.cuda.synchronize()
    upload = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = head(lstm(x[idx])[0][:, -1, :])
            loss = nn.functional.mse_loss(out.float(), y[idx])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        val_loss = torch.zeros((), device=device)
        with torch.no_grad():
            for start in range(0, len(xv), 8192):
                with autocast():
                    out = head(lstm(xv[start : start + 8192])[0][:, -1, :])
                val_loss += nn.functional.mse_loss(
                    out.float(), yv[start : start + 8192], reduction="sum"
                )
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started, upload


def universe_lstm(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The LSTM fit throughput, project vs bare loop (see the docstring)."""
    import torch

    from stockml.model_config import ModelConfig

    config = ModelConfig.from_yaml().for_universe()
    epochs = args.epochs or 3
    batch = args.batch_size or config.lstm.batch_size
    fit, val, info = universe_samples(args.universe, args.symbols, config.window)
    print(
        f"device={device} torch={torch.__version__} symbols={info['symbols']} "
        f"bars={info['bars']} fit windows={len(fit)} val windows={len(val)} "
        f"features={info['n_features']} window={config.window} batch={batch} epochs={epochs} "
        f"(features computed in {info['features_seconds']:.1f} s)"
    )
    # warm-up: CUDA context, cuDNN plans, allocator; not timed
    warm = fit.take(np.arange(len(fit)) < 2 * batch)
    project_fit(config, device, 1, batch, warm, val.take(np.arange(len(val)) < batch))
    bare_fit(config, device, 1, batch, warm, val.take(np.arange(len(val)) < batch))
    del warm
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    cpu_clock = time.process_time()
    project_s, model = project_fit(config, device, epochs, batch, fit, val)
    project_cpu = time.process_time() - cpu_clock
    project_peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    cpu_clock = time.process_time()
    bare_s, bare_upload = bare_fit(config, device, epochs, batch, fit, val)
    bare_cpu = time.process_time() - cpu_clock
    samples = epochs * len(fit)
    result: dict[str, Any] = {
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__,
        **info,
        "window": config.window,
        "fit_windows": len(fit),
        "val_windows": len(val),
        "batch_size": batch,
        "epochs": epochs,
        "hidden_size": config.lstm.hidden_size,
        "num_layers": config.lstm.num_layers,
        "project_fit_seconds": project_s,
        "project_samples_per_s": samples / project_s,
        "bare_fit_seconds": bare_s,
        "bare_upload_seconds": bare_upload,
        "bare_samples_per_s": samples / bare_s,
        "gpu_loop_ratio": (samples / project_s) / (samples / bare_s),
        "project_process_seconds": project_cpu,
        "bare_process_seconds": bare_cpu,
        "project_cuda_peak_mb": None if project_peak is None else project_peak / 2**20,
        "val_loss": model.history_[-1]["val_loss"],
    }
    print(
        f"project LSTMModel.fit {project_s:8.2f} s  {result['project_samples_per_s']:10.0f} samples/s"
    )
    print(f"bare torch loop       {bare_s:8.2f} s  {result['bare_samples_per_s']:10.0f} samples/s")
    print(f"gpu_loop_ratio (project / bare) {result['gpu_loop_ratio']:.3f}")
    if args.cpu_epochs and device.startswith("cuda"):
        part = fit.take(np.arange(len(fit)) < args.cpu_windows)
        # the same share of validation windows as the GPU fit had: a like-for-like ratio
        val_part = val.take(np.arange(len(val)) < len(val) * len(part) / len(fit))
        cpu_s, _ = project_fit(config, "cpu", args.cpu_epochs, batch, part, val_part)
        result["cpu_threads"] = torch.get_num_threads()
        result["cpu_fit_windows"] = len(part)
        result["cpu_fit_seconds"] = cpu_s
        result["cpu_samples_per_s"] = args.cpu_epochs * len(part) / cpu_s
        result["lstm_gpu_speedup"] = result["project_samples_per_s"] / result["cpu_samples_per_s"]
        print(
            f"same fit on the host CPU ({torch.get_num_threads()} threads): "
            f"{result['cpu_samples_per_s']:.0f} samples/s; GPU speed-up {result['lstm_gpu_speedup']:.1f}x"
        )
    return result


def universe_dataset(path: str, symbols: int | None) -> tuple[Any, dict[str, Any]]:
    """The training job's Dataset of a universe file: features of every symbol (the
    cross-sections over all of them), then the first ``symbols`` symbols kept."""
    from stockml.features import FeatureConfig, build_features, feature_columns, target_columns
    from stockml.train import Dataset

    table = pd.read_parquet(path) if not path.endswith(".csv") else pd.read_csv(path)
    table = table.rename(columns=str.lower).rename(columns={"adj close": "adj_close"})
    config = FeatureConfig.from_yaml()
    counts = table.groupby("symbol").size()
    ready = sorted(counts[counts > config.warmup_rows()].index)
    bars = table[table["symbol"].isin(ready)].assign(source="file")
    started = time.perf_counter()
    frame = build_features(bars, None, None, config)
    seconds = time.perf_counter() - started
    keep = ready[:symbols]
    frame = frame[frame["symbol"].isin(keep)].reset_index(drop=True)
    data = Dataset(
        frame=frame,
        feature_names=feature_columns(config),
        target_names=target_columns(config),
        feature_config=config.model_dump(mode="json"),
    )
    return data, {"job_symbols": len(keep), "job_rows": len(frame), "features_seconds": seconds}


def run_job(data: Any, device: str, models: list[str] | None = None) -> dict[str, Any]:
    """``stockml.train.train`` in universe mode on ``device``: seconds and what it did."""
    import tempfile
    from pathlib import Path

    import torch

    from stockml.model_config import ModelConfig
    from stockml.train import train

    overrides: dict[str, Any] = {"device": device}
    if models:
        overrides["models"] = models
    config = ModelConfig.from_yaml(**overrides).for_universe()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train(data, config, Path(tmp))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    fits = [f["fit_seconds"] for f in result.walk_forward.folds] + [result.fitted.fit_seconds]
    per_model = {m: sum(f.get(m, 0.0) for f in fits) for m in fits[0]}
    report = result.walk_forward.report()
    universe = report["universe"]
    ranked = {
        name: {k: block[k] for k in ("rank_ic", "rank_ic_t", "long_short_sharpe_net", "turnover")}
        for name, block in {**universe["models"], **universe["factors"]}.items()
    }
    return {
        "seconds": seconds,
        "fit_seconds": per_model,
        "lstm_steps": [f["iterations"].get("lstm") for f in result.walk_forward.folds]
        + [result.fitted.iterations.get("lstm")],
        "tree_iterations": {
            m: [f["iterations"].get(m) for f in result.walk_forward.folds]
            + [result.fitted.iterations.get(m)]
            for m in ("xgboost", "lightgbm")
        },
        "gate": result.gate.summary,
        "ranking": ranked,
        "best_factor": universe["best_factor"],
        "n_test_dates": universe["n_dates"],
        "parity_max_abs": max(p["max_abs"] for p in result.parity.values()),
    }


def universe_main(args: argparse.Namespace) -> None:
    """The universe mode: the LSTM loop (project vs bare), then the whole job (docstring)."""
    import logging
    import resource

    import torch

    # one line per fold and per model fit: where the job's time goes
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    cuda = device.startswith("cuda")
    result: dict[str, Any] = {"mode": "universe", "device": device}
    if not args.job_only:
        result.update(universe_lstm(args, device))
        if args.out:  # kept should the job not finish in the time it is given
            from pathlib import Path

            Path(args.out).write_text(json.dumps({**result, "job": "not finished"}) + "\n")
    if not args.no_job:
        import xgboost

        from stockml.models.trees import xgboost_has_cuda

        data, info = universe_dataset(args.universe, args.symbols)
        result.update(info)
        result["xgboost"] = xgboost.__version__
        result["xgboost_cuda"] = xgboost_has_cuda()
        result["cpu_threads"] = torch.get_num_threads()
        print(
            f"job: {info['job_symbols']} symbols, {info['job_rows']} feature rows on {device} "
            f"(xgboost {xgboost.__version__}, CUDA build: {result['xgboost_cuda']})",
            flush=True,
        )
        models = args.models.split(",") if args.models else None
        job = run_job(data, device, models)
        result["job_seconds"] = job["seconds"]
        result["job"] = job
        print(
            f"job on {device}: {job['seconds']:.1f} s; fit seconds "
            + ", ".join(f"{m} {s:.1f}" for m, s in job["fit_seconds"].items())
            + f"; gate: {job['gate']}",
            flush=True,
        )
        if cuda:
            lstm_s = job["fit_seconds"].get("lstm", 0.0)
            speedup = result.get("lstm_gpu_speedup")
            if speedup:
                estimate = job["seconds"] - lstm_s + lstm_s * speedup
                result["cpu_job_seconds_estimated"] = estimate
                result["gpu_speedup"] = estimate / job["seconds"]
                result["gpu_speedup_method"] = (
                    "cpu job = gpu job with the LSTM's training seconds x lstm_gpu_speedup "
                    "(the trees, features, scoring and export run on the same CPU in both)"
                )
                print(
                    f"cpu job (estimated) {estimate:.1f} s: gpu_speedup {result['gpu_speedup']:.2f}",
                    flush=True,
                )
            if args.cpu_job_symbols:
                small, _ = universe_dataset(args.universe, args.cpu_job_symbols)
                on_gpu = run_job(small, device, models)
                on_cpu = run_job(small, "cpu", models)
                result["measured_job_symbols"] = args.cpu_job_symbols
                result["measured_gpu_job_seconds"] = on_gpu["seconds"]
                result["measured_cpu_job_seconds"] = on_cpu["seconds"]
                result["measured_cpu_fit_seconds"] = on_cpu["fit_seconds"]
                result["measured_gpu_fit_seconds"] = on_gpu["fit_seconds"]
                result["gpu_speedup_measured"] = on_cpu["seconds"] / on_gpu["seconds"]
                print(
                    f"job on {args.cpu_job_symbols} symbols: gpu {on_gpu['seconds']:.1f} s, cpu "
                    f"{on_cpu['seconds']:.1f} s: measured speed-up {result['gpu_speedup_measured']:.2f}",
                    flush=True,
                )
        else:
            result["gpu_speedup"] = None
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = json.dumps(result)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
