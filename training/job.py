"""The training job's entry point (AWS Batch container, or any machine): ``python training/job.py``.

Configuration comes from the environment like every stockml process (``STOCKML_STORE__BUCKET``,
``MLFLOW_TRACKING_URI`` or ``STOCKML_MLFLOW__TRACKING_URI``, ``STOCKML_CONFIG_DIR``); the
models use CUDA when torch sees a GPU and the CPU otherwise, so CI runs the same entry point.
A failure exits non-zero, so Batch's retry strategy and alarms see it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from stockml.orchestration import run_training
from stockml.settings import Settings
from stockml.tracking import tracking_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train, evaluate, export and publish a stockml bundle."
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="Comma-separated tickers (default: ingest.symbols less market).",
    )
    parser.add_argument(
        "--no-mlflow",
        action="store_true",
        help="Skip MLflow (the bundle is still gated and published).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    if args.no_mlflow:
        summary = run_training(settings, symbols)
    else:
        with tracking_server(settings.mlflow.tracking_uri) as uri:
            summary = run_training(settings, symbols, tracking_uri=uri)
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
