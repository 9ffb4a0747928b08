"""The ingestion CLI (``stockml ingest``, ``store ls|show``, ``local up|status|down``), in-process."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stockml import cli
from stockml.local import LocalServer, free_port
from stockml.settings import StoreSettings

pytestmark = pytest.mark.integration

runner = CliRunner()


def test_ingest_then_ls_and_show(
    monkeypatch: pytest.MonkeyPatch, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN the environment pointing at a fresh bucket
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)

    # WHEN the sample data of two symbols is ingested and the store listed
    ingested = runner.invoke(
        cli.app,
        ["ingest", "--symbols", "MSFT,^VIX", "--provider", "sample", "--start", "2017-01-01"],
    )
    listed = runner.invoke(cli.app, ["store", "ls"])
    shown = runner.invoke(cli.app, ["store", "show", "^VIX", "--tail", "2"])
    missing = runner.invoke(cli.app, ["store", "show", "NOPE"])

    # THEN each command succeeds and prints what is stored
    assert ingested.exit_code == 0, ingested.output
    assert listed.exit_code == 0 and "MSFT" in listed.output and "^VIX" in listed.output
    assert shown.exit_code == 0 and "2019-01-03" in shown.output
    assert missing.exit_code == 1


def test_ingest_exits_non_zero_when_a_symbol_fails(
    monkeypatch: pytest.MonkeyPatch, store_settings: StoreSettings, moto_server: LocalServer
) -> None:
    # GIVEN the environment pointing at a fresh bucket
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    # WHEN a symbol the sample provider does not know is ingested
    result = runner.invoke(cli.app, ["ingest", "--symbols", "NOSUCH", "--provider", "sample"])
    # THEN the command fails and names the error
    assert result.exit_code == 1
    assert "NOSUCH failed: UnknownSymbolError" in result.output


def test_local_up_is_used_by_other_commands_then_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a working folder without local state and no endpoint in the environment
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKML_STORE__ENDPOINT_URL", raising=False)
    port = free_port()

    # WHEN the local S3 is started
    up = runner.invoke(cli.app, ["local", "up", "--port", str(port)])
    try:
        # THEN its endpoint is remembered and every command's settings use it
        assert up.exit_code == 0, up.output
        state = json.loads((tmp_path / ".stockml" / "local.json").read_text())
        assert state["endpoint_url"] == f"http://127.0.0.1:{port}"
        assert cli._settings().store.endpoint_url == state["endpoint_url"]
        assert runner.invoke(cli.app, ["local", "status"]).exit_code == 0
        assert runner.invoke(cli.app, ["store", "ls"]).exit_code == 0
    finally:
        down = runner.invoke(cli.app, ["local", "down"])
    # AND after ``down`` the state is gone and status reports it
    assert down.exit_code == 0 and not (tmp_path / ".stockml" / "local.json").exists()
    assert runner.invoke(cli.app, ["local", "status"]).exit_code == 1
