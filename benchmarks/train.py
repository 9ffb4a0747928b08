"""Training time per model and ONNX Runtime vs native inference latency, on the sample data.

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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
