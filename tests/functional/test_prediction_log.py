"""The prediction log against a real moto_server: writers in separate processes (API
containers) and compactions racing them keep every record once. (What the API handler serves
reaching the log: tests/functional/test_api_handler.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stockml.local import LocalServer
from stockml.monitoring.predictions import compact, read_log
from stockml.predlog import INCOMING
from stockml.storage import Store
from utils.api_fixtures import new_bucket

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WRITER = REPO / "tests" / "utils" / "predlog_writer.py"


def run_together(jobs: list[dict]) -> list[str]:
    """One process per job, started together once all are ready; their last output lines."""
    procs = [
        subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, str(WRITER), json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for job in jobs
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        outputs.append(out.strip().splitlines()[-1])
    return outputs


def test_concurrent_writers_and_compactions_keep_every_record_once(
    moto_server: LocalServer,
) -> None:
    # GIVEN three API containers logging 300 forecasts each (flushing every 40 records) and
    # two monitors compacting the log again and again meanwhile
    store_settings = new_bucket(moto_server)
    base = {"endpoint": moto_server.url, "bucket": store_settings.bucket}
    writers = [
        {**base, "role": "writer", "tag": f"w{k}", "forecasts": 300, "max_records": 40}
        for k in range(3)
    ]
    compactors = [{**base, "role": "compactor", "rounds": 6} for _ in range(2)]
    # WHEN they all run at once, then one last compaction
    outputs = run_together(writers + compactors)
    assert all(json.loads(o)["written"] == 1200 for o in outputs[:3])
    store = Store.from_settings(store_settings)
    compact(store, "predictions")
    # THEN the log holds every record exactly once (900 forecasts x 2 models x 2 horizons),
    # each with the values its writer served
    log = read_log(store, "predictions")
    assert len(log) == 3600 and log["record_id"].is_unique
    keys = log.groupby(["request_id", "model", "horizon"]).size()
    assert len(keys) == 3600 and keys.eq(1).all()
    for row in log.sample(50, random_state=0).itertuples():
        i = int(row.request_id.split("-")[1])
        scale = 1.0 if row.model == "ensemble" else 2.0
        expected = (1 if row.horizon == 1 else -1) * i * 1e-5 * scale
        assert row.predicted_log_return == pytest.approx(expected)
        assert row.as_of.day == (8, 9, 10)[i % 3]
    # AND nothing is left to compact: one part per as-of date, no incoming object
    assert compact(store, "predictions")["parts_written"] == 0
    keys_left = store.list_keys("predictions/")
    assert not [k for k in keys_left if f"/{INCOMING}/" in k]
    assert len(keys_left) == 3
