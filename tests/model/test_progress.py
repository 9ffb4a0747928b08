"""Long training work reports its progress to a callback, and logs one line per fold."""

from __future__ import annotations

import logging

import pytest

from stockml.train import Dataset, walk_forward
from utils.training_data import tiny_config


def test_walk_forward_reports_each_fit_and_logs_one_line_per_fold(
    msft_data: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN two models and two folds
    config = tiny_config(models=["lstm", "xgboost"])
    calls: list[tuple[str, int, int]] = []
    # WHEN the walk-forward runs with a progress callback
    with caplog.at_level(logging.INFO, logger="stockml.train"):
        walk_forward(msft_data, config, lambda *call: calls.append(call))
    # THEN every model fit of every fold was reported, counting up to folds x models
    assert calls == [("walk-forward", done, 4) for done in range(5)]
    # AND the training log holds one line per fold
    lines = [r.getMessage() for r in caplog.records if r.name == "stockml.train"]
    assert len(lines) == 2 and all(line.startswith("fold ") for line in lines)
