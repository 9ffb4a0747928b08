"""Typed dependencies of the routes (``XDep = Annotated[X, Depends(...)]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from stockml.api.models import SYMBOL_PATTERN
from stockml.api.security import rate_limit
from stockml.errors import BundleError
from stockml.inference import PredictionService
from stockml.settings import Settings


@dataclass
class ServingState:
    """What the app holds: the service, or why there is none (shown by /health and 503s)."""

    settings: Settings
    service: PredictionService | None
    error: str | None


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


StateDep = Annotated[ServingState, Depends(get_state)]


async def get_service(state: StateDep) -> PredictionService:
    """The prediction service; 503 (BundleError) when the bundle failed to load."""
    if state.service is None:
        raise BundleError(f"no model bundle is loaded: {state.error}")
    return state.service


ServiceDep = Annotated[PredictionService, Depends(get_service)]

SymbolPath = Annotated[
    str,
    Path(
        pattern=SYMBOL_PATTERN,
        description="Ticker, upper case, e.g. MSFT or ^GSPC (URL-encoded).",
        examples=["MSFT"],
    ),
]

# every data route: API key (if configured), then the per-caller rate limit
PROTECTED = [Depends(rate_limit)]
