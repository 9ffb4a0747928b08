"""``stockml monitor``: the run's tables and JSON, and its mistakes as one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stockml import cli
from stockml.local import LocalServer
from stockml.storage import Store
from utils.api_fixtures import new_bucket
from utils.monitoring import replay, replay_window
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration

runner = CliRunner()


def test_monitor_prints_the_run_and_its_json(
    monkeypatch: pytest.MonkeyPatch, moto_server: LocalServer, serving_bundle: BuiltBundle
) -> None:
    # GIVEN a store where the bundle served MSFT's last 70 sessions
    store_settings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    start, end = replay_window(serving_bundle, 70)
    replay(store, serving_bundle, start, end)
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    day = end.date().isoformat()
    # WHEN the monitor runs as of the last session, deciding without retraining
    shown = runner.invoke(cli.app, ["monitor", "--as-of", day, "--no-retrain"])
    as_json = runner.invoke(cli.app, ["monitor", "--as-of", day, "--no-retrain", "--json"])
    # THEN it prints the live figures, the data's health and the retraining decision
    assert shown.exit_code == 0, shown.output
    assert "live, model v-test-1: 60 sessions" in shown.output
    assert "no drift" in shown.output and "every symbol fresh" in shown.output
    assert "retraining: RETRAIN (not triggered: --no-retrain)" in shown.output
    # AND the JSON is the published status
    assert as_json.exit_code == 0, as_json.output
    status = json.loads(as_json.output)
    assert status == json.loads(store.get_bytes("monitoring/status.json"))
    assert status["retrain"]["trigger"] is None and status["retrain"]["retrain"] is True


def test_a_bad_date_is_a_one_line_error() -> None:
    result = runner.invoke(cli.app, ["monitor", "--as-of", "2017-13-01"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --as-of '2017-13-01' is not a date (YYYY-MM-DD)"
