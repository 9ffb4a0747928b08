"""Property-based run of schemathesis against the app's own OpenAPI schema (in-process ASGI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from stockml.api import create_app
from stockml.api.deps import ServingState
from stockml.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class LateApp:
    """ASGI app that forwards to ``target``, set by a fixture once the store exists.

    The schema must exist at import time (parametrization), the store only in fixtures;
    schemathesis' ``from_fixture`` does not work with this pytest, hence the indirection.
    """

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.target(scope, receive, send)


_settings = Settings(**{"STOCKML_API_KEY": None})
# the schema does not depend on the bundle: an app without one serves the same openapi.json
late = LateApp(create_app(_settings, state=ServingState(_settings, None, "set by the fixture")))
schema = schemathesis.openapi.from_asgi("/openapi.json", late)


@pytest.fixture(scope="module", autouse=True)
def serving_app(make_settings: Callable[..., Settings]) -> Iterator[None]:
    previous = late.target
    app = create_app(make_settings())
    late.target = app
    yield
    late.target = previous
    # the run must have reached real predictions (the schema's MSFT example), not only 4xx
    answered = app.state.metrics.requests
    assert answered[("POST", "/predict/{symbol}", 200)] > 0, dict(answered)
    assert answered[("GET", "/plot/{symbol}", 200)] > 0, dict(answered)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case) -> None:  # type: ignore[no-untyped-def]
    # GIVEN generated requests (valid and invalid) for every operation
    # WHEN sent to the app with its bundle
    # THEN no 5xx, and status, content type and body match the schema
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
