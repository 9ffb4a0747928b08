"""A few seconds of benchmarks/load.py: uvicorn with 2 workers under keep-alive load, 0 errors.

The benchmark itself runs a minute per endpoint (README: load figures); this checks its parts
against the session's serving bundle: the server, both load generators, the probe that loads
/rankings only where the API has it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stockml.settings import StoreSettings
from utils.modules import load_file

REPO = Path(__file__).resolve().parents[2]


def test_the_api_under_uvicorn_workers_answers_a_short_load_without_errors(
    serving_store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the API under uvicorn with 2 workers, reading the session's bundle, no API key
    load = load_file(REPO / "benchmarks" / "load.py", "load_benchmark")
    monkeypatch.delenv("STOCKML_API_KEY", raising=False)
    env = {
        "STOCKML_STORE__BUCKET": serving_store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(serving_store.endpoint_url),
        "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
        "STOCKML_API__LOG_LEVEL": "WARNING",
    }
    with load.api_server(env, workers=2) as url:
        # WHEN /predict gets 2 s of load from 8 connections (the Python client, and wrk too
        # where it is installed)
        generators = [load.python_load] + ([load.wrk_load] if shutil.which("wrk") else [])
        runs = [g(url, load.PREDICT, 2.0, 8) for g in generators]
        # AND the probe that decides whether /rankings is loaded asks an endpoint that answers
        # and one that does not
        answers = load.probe(url, load.PREDICT)
        missing = load.probe(url, ("GET", "/no-such-endpoint", b""))

    # THEN every request succeeded, and the figures are consistent
    for run in runs:
        assert run["errors"] == 0, run
        assert run["requests"] > 0 and run["rps"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
    # AND an endpoint is loaded only when it answers 200; otherwise the answer says why
    assert answers is None
    assert missing is not None and missing.startswith("GET /no-such-endpoint answers HTTP 404")
