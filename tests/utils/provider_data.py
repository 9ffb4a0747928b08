"""Helpers of the provider tests: our own fixture files and a fast retry policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stockml.providers.base import RetryPolicy

OWN = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
# tiny waits: the retry logic is what is tested, not the clock
FAST_RETRY = RetryPolicy(max_retries=2, backoff_s=0.01)


def own_json(name: str) -> Any:
    """One of our own fixtures under tests/fixtures/providers/."""
    return json.loads((OWN / name).read_text())
