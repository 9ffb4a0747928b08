"""Fixtures of the model tests: small real datasets (see ``utils.training_data``)."""

from __future__ import annotations

import pytest

from stockml.train import Dataset
from utils.training_data import make_dataset


@pytest.fixture(scope="session")
def msft_data() -> Dataset:
    return make_dataset(("MSFT",), rows=400)


@pytest.fixture(scope="session")
def two_symbol_data() -> Dataset:
    return make_dataset(("MSFT", "^GSPC"), rows=300)
