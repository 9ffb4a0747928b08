"""A forward test of a published bundle on the embedded MSFT data, against a local moto_server.

The store first holds the bars up to ``--cut`` only; ``stockml train`` (no MLflow, the
configuration of configs/model_config.yaml) publishes a bundle from them. Then the later bars
arrive, and ``stockml evaluate --bundle <version> --from <first session after its training
end>`` scores that bundle, unchanged, on every later session with known outcomes: no refit,
the bundle's own ONNX models, bands and baselines. This is what a deployed model would have
scored after its training, the out-of-sample figure a walk-forward only simulates.

    python benchmarks/forward.py                  # cut 2016-11-21: test 2016-11-15..2017-11-03
    python benchmarks/forward.py --cut 2015-11-30

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import boto3
import pandas as pd

from stockml.local import start_moto_server
from stockml.orchestration import run_forward_test, run_training
from stockml.providers.sample import SampleProvider
from stockml.settings import Settings, StoreSettings
from stockml.storage import Store

SYMBOLS = ["MSFT", "^GSPC", "^IXIC", "^VIX"]
KEYS = (
    "rmse_ratio_vs_naive",
    "rmse_ratio_vs_best_baseline",
    "dm_pvalue_vs_best_baseline",
    "directional_accuracy",
    "directional_accuracy_always_long",
    "directional_pvalue",
    "ic",
    "interval_coverage",
)


def store_bars(store: Store, start: str, end: str) -> None:
    sample = SampleProvider()
    for symbol in SYMBOLS:
        store.upsert_bars(
            sample.fetch_bars(symbol, pd.Timestamp(start).date(), pd.Timestamp(end).date())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="2016-11-21", help="last bar the bundle is trained on")
    args = parser.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "local")  # moto accepts any credentials
    server = start_moto_server()
    try:
        settings = Settings(store=StoreSettings(bucket="forward", endpoint_url=server.url))
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
            Bucket="forward"
        )
        store = Store.from_settings(settings.store)
        store_bars(store, "1999-01-01", args.cut)
        started = time.perf_counter()
        trained = run_training(settings, ["MSFT"])
        train_seconds = time.perf_counter() - started
        train_end = trained["data_window"]["train_end"]
        print(f"bundle {trained['version']}: trained to {train_end}; gate: {trained['gate']}")
        store_bars(
            store, (pd.Timestamp(args.cut) + pd.Timedelta(days=1)).date().isoformat(), "2017-11-10"
        )
        first = (pd.Timestamp(train_end) + pd.Timedelta(days=1)).date().isoformat()
        report = run_forward_test(settings, trained["version"], first)
    finally:
        server.stop()
    print(
        f"forward test {report['from']}..{report['to']}, {report['n_sessions']} sessions, horizon 1"
    )
    models = {}
    for name, block in report["models"].items():
        pooled = block["pooled"]
        models[name] = {k: pooled.get(k) for k in KEYS}
        shown = "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in models[name].items()
        )
        print(f"{name:9s} {shown}")
    print(
        json.dumps(
            {
                "bundle": trained["version"],
                "train_end": train_end,
                "gate": trained["gate"],
                "train_seconds": train_seconds,
                "from": report["from"],
                "to": report["to"],
                "n_sessions": report["n_sessions"],
                "models": models,
            }
        )
    )


if __name__ == "__main__":
    main()
