"""The command line's progress bars: driven by the domain's callback, logs printed above them."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from rich.console import Console

from stockml import cli


def test_progress_callbacks_become_bars_and_logs_go_above_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a terminal console and a log handler writing to stderr (as basicConfig makes)
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(cli, "console", terminal)
    handler = logging.StreamHandler(sys.stderr)
    original = handler.stream
    logging.getLogger().addHandler(handler)
    try:
        # WHEN domain code reports two tasks while the bars are shown
        with cli._progress() as bars:
            bars("features", 3, 10)
            bars("features", 10, 10)
            bars.start("ingest", 4)
            bars.advance("ingest")
            # THEN the log handler writes through rich (above the live bars), not under them
            assert handler.stream is sys.stderr is not original
            tasks = {t.description: t for t in bars.progress.tasks}
        # AND each task is one bar with its count and total
        assert (tasks["features"].completed, tasks["features"].total) == (10, 10)
        assert (tasks["ingest"].completed, tasks["ingest"].total) == (1, 4)
        # AND afterwards the handler writes where it did before
        assert handler.stream is original
    finally:
        logging.getLogger().removeHandler(handler)


def test_symbols_and_universe_together_are_refused() -> None:
    # GIVEN / WHEN / THEN
    import typer

    with pytest.raises(typer.BadParameter, match="not both"):
        cli._wanted(cli.Settings(), "MSFT", "sample")
