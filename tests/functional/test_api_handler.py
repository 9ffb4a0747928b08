"""The Lambda handler (functions/api/app.py) invoked in-process with the API Gateway events."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stockml.inference import bundle_loads
from stockml.local import LocalServer
from stockml.monitoring.predictions import read_log
from stockml.monitoring.results import live_key, status_key
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.api_fixtures import API_KEY, ENDPOINTS, new_bucket
from utils.lambda_context import LambdaContext, context_source
from utils.serving_bundle import BuiltBundle, publish
from utils.universe_bundle import DELISTED, UNTRAINED

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"

pytestmark = pytest.mark.integration


def event(name: str, version: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"api_{name}_{version}.json").read_text())


def import_handler(store: StoreSettings, api_key: str | None = API_KEY, **env: str) -> ModuleType:
    """Import functions/api/app.py as a fresh module (a new container) with the template's env.

    ``api_key=None``: no STOCKML_API_KEY, as on AWS, where the gateway checks the key.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOCKML_STORE__BUCKET", store.bucket)
        mp.setenv("STOCKML_STORE__ENDPOINT_URL", str(store.endpoint_url))
        if api_key is None:
            mp.delenv("STOCKML_API_KEY", raising=False)
        else:
            mp.setenv("STOCKML_API_KEY", api_key)
        mp.setenv("STOCKML_API__RATE_LIMIT_PER_MINUTE", "0")
        for k, v in env.items():
            mp.setenv(k, v)
        spec = importlib.util.spec_from_file_location(
            f"api_app_{uuid.uuid4().hex}", REPO / "functions/api/app.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lambda_app(serving_store: StoreSettings) -> ModuleType:
    return import_handler(serving_store)


@pytest.fixture
def invoke(lambda_app: ModuleType) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda ev: lambda_app.handler(ev, LambdaContext())


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_event_gets_200(invoke: Callable, name: str, version: str) -> None:
    # GIVEN a recorded-format API Gateway event of one endpoint
    # WHEN the handler is invoked with it
    response = invoke(event(name, version))
    # THEN 200 with a body of the right kind
    assert response["statusCode"] == 200, response["body"]
    if name == "metrics_prom":
        assert "stockml_requests_total" in response["body"]
        return
    body = json.loads(response["body"])
    if name == "predict":
        assert body["symbol"] == "MSFT" and all(len(v) == 3 for v in body["predictions"].values())
    if name == "plot":
        assert len(body["history"]) == 30 and len(body["dates"]) == 5
    if name == "health":
        assert body["status"] == "ok"


def test_request_id_comes_from_the_lambda_context(lambda_app: ModuleType) -> None:
    context = LambdaContext()
    response = lambda_app.handler(event("version", "v2"), context)
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["x-request-id"] == context.aws_request_id


def test_bundle_is_loaded_once_per_container(serving_store: StoreSettings) -> None:
    # GIVEN a fresh container: importing the handler reads the bundle once
    before = bundle_loads()
    module = import_handler(serving_store)
    assert bundle_loads() == before + 1
    service = module.app.state.serving.service
    # WHEN it serves 40 invocations of every kind
    for i in range(40):
        ev = event(ENDPOINTS[i % len(ENDPOINTS)], "v1" if i % 2 else "v2")
        assert module.handler(ev, LambdaContext())["statusCode"] == 200
    # THEN the bundle was not read again, and the same service (ONNX sessions) served all
    assert bundle_loads() == before + 1
    assert module.app.state.serving.service is service


def _with(
    ev: dict[str, Any], path: str | None = None, body: str | None = None, key: str | None = API_KEY
) -> dict[str, Any]:
    ev = copy.deepcopy(ev)
    headers = ev["headers"]
    if path is not None:
        if "rawPath" in ev:
            ev["rawPath"] = ev["requestContext"]["http"]["path"] = path
        else:
            ev["path"] = path
    if body is not None:
        ev["body"] = body
    for name in [h for h in headers if h.lower() == "x-api-key"]:
        del headers[name]
        ev.get("multiValueHeaders", {}).pop(name, None)
    if key is not None:
        headers["x-api-key"] = key
    return ev


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("path", "body", "key", "status", "code"),
    [
        ("/predict/msft", None, API_KEY, 422, "invalid_request"),
        ("/predict/AAPL", None, API_KEY, 404, "unknown_symbol"),
        (None, '{"days": 99}', API_KEY, 422, "invalid_request"),
        (None, '{"days": ', API_KEY, 422, "invalid_request"),
        (None, None, None, 401, "unauthorized"),
        (None, None, "wrong-key", 401, "unauthorized"),
    ],
)
def test_bad_requests_through_the_handler(
    invoke: Callable,
    version: str,
    path: str | None,
    body: str | None,
    key: str | None,
    status: int,
    code: str,
) -> None:
    response = invoke(_with(event("predict", version), path, body, key))
    assert response["statusCode"] == status, response["body"]
    assert json.loads(response["body"])["error"]["code"] == code


def test_rate_limit_through_the_handler(serving_store: StoreSettings) -> None:
    # GIVEN a container limited to 2 requests per minute per key
    module = import_handler(serving_store, STOCKML_API__RATE_LIMIT_PER_MINUTE="2")
    # WHEN the same key calls 3 times
    responses = [module.handler(event("symbols", "v2"), LambdaContext()) for _ in range(3)]
    # THEN the third is 429 with Retry-After
    assert [r["statusCode"] for r in responses] == [200, 200, 429]
    headers = {k.lower(): v for k, v in responses[2]["headers"].items()}
    assert int(headers["retry-after"]) >= 1


def test_corrupt_bundle_container_starts_and_says_why(corrupt_store: StoreSettings) -> None:
    # GIVEN a container whose champion bundle has a flipped byte
    module = import_handler(corrupt_store)
    # WHEN health and predict are invoked
    health = module.handler(event("health", "v1"), LambdaContext())
    predict = module.handler(event("predict", "v2"), LambdaContext())
    # THEN 503 with the reason, never a traceback
    assert (
        health["statusCode"] == 503 and "sha256" in json.loads(health["body"])["bundle"]["detail"]
    )
    assert predict["statusCode"] == 503
    assert json.loads(predict["body"])["error"]["code"] == "model_unavailable"
    assert "Traceback" not in predict["body"]


def test_a_fresh_container_serves_without_pandas_or_botocore(serving_store: StoreSettings) -> None:
    # GIVEN a fresh interpreter (a new Lambda container) with the template's environment
    code = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("app", "functions/api/app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)

        {context_source("stockml-api", "cold")}

        statuses = {{}}
        for name in {ENDPOINTS!r}:
            event = json.load(open(f"events/api_{{name}}_v2.json"))
            statuses[name] = app.handler(event, context)["statusCode"]
        heavy = ["pandas", "pyarrow", "botocore", "boto3", "exchange_calendars", "torch",
                 "aws_lambda_powertools"]
        print(json.dumps({{"statuses": statuses, "imported": [m for m in heavy if m in sys.modules]}}))
        """
    )
    env = {
        **os.environ,
        "STOCKML_STORE__BUCKET": serving_store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(serving_store.endpoint_url),
        "STOCKML_API_KEY": API_KEY,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    # WHEN it imports the handler and serves every endpoint's event once
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN every answer is 200, and no heavy library was ever imported: the cold start pays for
    # the web stack, ONNX Runtime and the bundle only (benchmarks/serve.py measures it)
    assert result["statuses"] == dict.fromkeys(ENDPOINTS, 200)
    assert result["imported"] == []
    # AND stderr (CloudWatch Logs on Lambda) holds one JSON access line per request, with
    # Lambda's request id, the route and the latency
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "stockml.api.access"]
    assert len(access) == len(ENDPOINTS)
    assert {line["request_id"] for line in access} == {"cold"}
    assert {line["status"] for line in access} == {200}
    assert all(line["latency_ms"] > 0 and line["route"].startswith("/") for line in access)


# ---------------------------------------------------------------------------- API edges


def _from(ev: dict[str, Any], source_ip: str, forwarded: str) -> dict[str, Any]:
    """``ev`` as API Gateway sends it for a caller at ``source_ip`` claiming ``forwarded``."""
    ev = copy.deepcopy(ev)
    if ev.get("version") == "2.0":
        ev["requestContext"]["http"]["sourceIp"] = source_ip
        ev["headers"]["x-forwarded-for"] = forwarded
    else:
        ev["requestContext"]["identity"]["sourceIp"] = source_ip
        ev["headers"]["X-Forwarded-For"] = forwarded
        ev["multiValueHeaders"]["X-Forwarded-For"] = [forwarded]
    return ev


def _sized(ev: dict[str, Any], body: str) -> dict[str, Any]:
    """``ev`` with ``body``; a v2 event keeps a true Content-Length, a v1 event has none."""
    ev = _with(ev, body=body)
    if "content-length" in ev["headers"]:
        ev["headers"]["content-length"] = str(len(body.encode()))
    return ev


def _body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_unrunnable_bundle_container_is_unhealthy(
    unrunnable_store: StoreSettings, version: str
) -> None:
    # GIVEN a container whose champion bundle is intact but holds swapped model graphs
    module = import_handler(unrunnable_store)
    # WHEN health and predict are invoked
    health = module.handler(event("health", version), LambdaContext())
    predict = module.handler(event("predict", version), LambdaContext())
    # THEN 503 with the reason, not 200 and then a 500 per prediction
    assert health["statusCode"] == 503, health["body"]
    assert "cannot run" in _body(health)["bundle"]["detail"]
    assert predict["statusCode"] == 503
    assert _body(predict)["error"]["code"] == "model_unavailable"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_body_over_the_limit_is_413_through_the_handler(invoke: Callable, version: str) -> None:
    # GIVEN a predict event carrying a 10 MB model name (v2 declares its length, v1 does not)
    ev = _sized(event("predict", version), json.dumps({"models": ["A" * 10_000_000]}))
    # WHEN the handler is invoked
    response = invoke(ev)
    # THEN 413 with a short JSON error
    assert response["statusCode"] == 413, response["body"][:200]
    assert _body(response)["error"]["code"] == "payload_too_large"
    assert len(response["body"]) < 500


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_errors_echo_input_clipped_through_the_handler(invoke: Callable, version: str) -> None:
    response = invoke(_sized(event("predict", version), json.dumps({"x" * 5000: 1})))
    assert response["statusCode"] == 422
    assert len(response["body"]) < 1000, response["body"][:300]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_openapi_through_the_handler_is_what_is_served(
    serving_store: StoreSettings, serving_bundle: BuiltBundle, version: str
) -> None:
    horizon = serving_bundle.manifest.horizon
    # GIVEN containers without the app key (as on AWS, the gateway checks it) and with one
    for api_key, declared in ((None, False), (API_KEY, True)):
        module = import_handler(serving_store, api_key=api_key)
        # WHEN the schema is asked for
        response = module.handler(_with(event("root", version), "/openapi.json"), LambdaContext())
        schema = _body(response)
        # THEN days goes up to the bundle's horizon, and the key scheme is there only with a key
        days = schema["components"]["schemas"]["PredictionRequest"]["properties"]["days"]
        assert [b["maximum"] for b in days.get("anyOf", [days]) if "maximum" in b] == [horizon]
        assert ("securitySchemes" in schema.get("components", {})) is declared
    # AND the horizon is what the container serves
    ok = module.handler(
        _sized(event("predict", version), json.dumps({"days": horizon})), LambdaContext()
    )
    over = module.handler(
        _sized(event("predict", version), json.dumps({"days": horizon + 1})), LambdaContext()
    )
    assert (ok["statusCode"], over["statusCode"]) == (200, 422)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rate_limit_keys_on_the_gateways_source_ip(
    serving_store: StoreSettings, version: str
) -> None:
    # GIVEN a container without the app key (as on AWS), limited to 2 requests a minute
    module = import_handler(serving_store, api_key=None, STOCKML_API__RATE_LIMIT_PER_MINUTE="2")
    symbols = event("symbols", version)

    def call(source_ip: str, forwarded: str) -> int:
        return int(
            module.handler(_from(symbols, source_ip, forwarded), LambdaContext())["statusCode"]
        )

    # WHEN one caller writes a new X-Forwarded-For each time
    same = [call("192.0.2.7", f"198.51.100.{i}") for i in range(3)]
    # THEN API Gateway's sourceIp is the key: the header opens no new bucket
    assert same == [200, 200, 429]
    # AND another source address has its own bucket
    assert call("192.0.2.8", "198.51.100.1") == 200


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rate_limit_believes_forwarded_for_from_a_trusted_proxy_only(
    serving_store: StoreSettings, version: str
) -> None:
    # GIVEN a gateway reached through a trusted proxy network (e.g. a CDN), limit 2 a minute
    module = import_handler(
        serving_store,
        api_key=None,
        STOCKML_API__RATE_LIMIT_PER_MINUTE="2",
        STOCKML_API__TRUSTED_PROXIES='["203.0.113.0/24"]',
    )
    symbols = event("symbols", version)

    def call(forwarded: str) -> int:
        return int(
            module.handler(_from(symbols, "203.0.113.10", forwarded), LambdaContext())["statusCode"]
        )

    # WHEN two clients call through the same proxy address
    first = [call("198.51.100.1") for _ in range(3)]
    # THEN each client has its own bucket, and prepending an address does not escape it
    assert first == [200, 200, 429]
    assert call("198.51.100.2") == 200
    assert call("192.0.2.99, 198.51.100.1") == 429


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_forecasts_say_how_old_their_data_is_through_the_handler(
    serving_store: StoreSettings, invoke: Callable, version: str
) -> None:
    # GIVEN the embedded data (2017): WHEN predict and plot are invoked
    for name in ("predict", "plot"):
        body = _body(invoke(event(name, version)))
        # THEN the answer says the data is stale, and how many sessions old
        assert body["stale"] is True and body["data_age_sessions"] > 1000
    # AND a container configured to refuse stale data answers 503 with the reason
    strict = import_handler(serving_store, STOCKML_API__REFUSE_STALE="true")
    refused = strict.handler(event("predict", version), LambdaContext())
    assert refused["statusCode"] == 503
    assert _body(refused)["error"]["code"] == "stale_features"


def test_what_the_lambda_handler_serves_reaches_the_store(
    moto_server: LocalServer, serving_bundle: BuiltBundle
) -> None:
    # GIVEN the API Lambda over a fresh store, flushing every 10 records
    store_settings: StoreSettings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    module = import_handler(store_settings, STOCKML_API__LOG_FLUSH_RECORDS="10")
    log = module.app.state.serving.service.log
    # WHEN it serves 7 predictions (3 days of 3 models each) and 2 charts
    served = {}
    for i in range(7):
        context = LambdaContext(aws_request_id=f"req-{i}")
        response = module.handler(event("predict", "v2"), context)
        assert response["statusCode"] == 200
        served[context.aws_request_id] = json.loads(response["body"])
    for i in range(2):
        assert (
            module.handler(event("plot", "v1"), LambdaContext(aws_request_id=f"plot-{i}"))[
                "statusCode"
            ]
            == 200
        )
    log.close()  # the container shuts down (SIGTERM on Lambda)
    # THEN the log holds each served close, with its request id, model version and date
    records = read_log(store, store_settings.predictions_prefix)
    predicted = records[records["endpoint"] == "predict"]
    assert len(predicted) == 7 * 3 * 3
    for row in predicted.itertuples():
        body = served[row.request_id]
        assert row.predicted_close == body["predictions"][row.model][row.horizon - 1]
        assert row.target_date.date().isoformat() == body["dates"][row.horizon - 1]
        assert row.model_version == body["model_version"] and row.symbol == "MSFT"
        assert row.as_of.date().isoformat() == body["last_date"]
        band = body["intervals"][row.model]
        assert (row.lower, row.upper) == (
            band["lower"][row.horizon - 1],
            band["upper"][row.horizon - 1],
        )
    charts = records[records["endpoint"] == "plot"]
    assert sorted(charts["request_id"].unique()) == ["plot-0", "plot-1"]
    assert not math.isnan(charts["predicted_close"].iloc[0])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_monitoring_serves_the_monitors_last_run(
    invoke: Callable, serving_store: StoreSettings, version: str
) -> None:
    # GIVEN the status the monitor published for the serving store (MSFT's last 70 sessions
    # served, then realised: utils.monitoring)
    store = Store.from_settings(serving_store)
    status = json.loads(store.get_bytes(status_key(serving_store.monitoring_prefix)))
    # WHEN /monitoring is asked
    response = invoke(event("monitoring", version))
    # THEN it answers the same figures for this API's model version
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["run_date"] == status["run_date"] == "2017-11-10"
    assert body["model_version"] == body["monitored_version"] == "v-test-1"
    live = status["live"]["v-test-1"]
    assert body["live"]["window"] == {
        "sessions": 60,
        "start": live["window"]["from"],
        "end": live["window"]["to"],
    }
    assert body["live"]["models"]["ensemble"]["1"] == live["models"]["ensemble"]["1"]
    assert body["drift"]["drifted"] == status["drift"]["drifted"]
    assert body["freshness"]["symbols"]["MSFT"]["stale"] is False
    assert [c["name"] for c in body["retrain"]["checks"]] == ["error", "coverage", "drift"]


def test_metrics_carry_the_live_figures_beside_the_backtest(
    invoke: Callable, serving_store: StoreSettings
) -> None:
    store = Store.from_settings(serving_store)
    published = json.loads(store.get_bytes(live_key(serving_store.monitoring_prefix, "MSFT")))
    body = json.loads(invoke(event("metrics", "v2"))["body"])
    # the bundle's backtest figures, as before
    assert set(body["models"]) == {"ridge", "lstm", "ensemble"}
    # AND the live ones of the same version, from the monitor's last run
    live = body["live"]
    ours = published["versions"]["v-test-1"]
    assert live["run_date"] == "2017-11-10" and live["window"]["sessions"] == 60
    assert live["models"]["ensemble"]["3"] == ours["models"]["ensemble"]["3"]
    assert live["models"]["drift"]["1"]["rmse_ratio_vs_naive"] == pytest.approx(
        ours["models"]["drift"]["1"]["rmse_ratio_vs_naive"]
    )
    series = live["series"]["ensemble"]["1"]
    assert series["dates"] == ours["series"]["ensemble"]["1"]["dates"]
    assert len(series["dates"]) == len(series["interval_coverage"]) == 50


def test_before_any_monitor_run_monitoring_is_503_and_metrics_have_no_live_block(
    moto_server: LocalServer, serving_bundle: BuiltBundle
) -> None:
    store_settings = new_bucket(moto_server)
    publish(Store.from_settings(store_settings), serving_bundle)
    module = import_handler(store_settings)
    response = module.handler(event("monitoring", "v1"), LambdaContext())
    assert response["statusCode"] == 503
    error = json.loads(response["body"])["error"]
    assert error["code"] == "store_unavailable" and "the monitor has not run" in error["message"]
    metrics = module.handler(event("metrics", "v1"), LambdaContext())
    assert metrics["statusCode"] == 200 and json.loads(metrics["body"])["live"] is None


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_rankings_event_ranks_the_universe_through_the_handler(
    universe_store: StoreSettings, version: str
) -> None:
    # GIVEN a container over the global bundle's store (25 stocks, one stopped trading)
    module = import_handler(universe_store)
    # WHEN the recorded-format event asks for the top and bottom 5 at horizon 1
    response = module.handler(event("rankings", version), LambdaContext())
    # THEN 200: the 5 best then the 5 worst of the 24 current stocks, best score first
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    rows = body["rankings"]
    assert body["n_ranked"] == 24 and body["n_excluded"] == 1
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 20, 21, 22, 23, 24]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert DELISTED not in {r["symbol"] for r in rows}
    assert body["model_version"] == "v-universe-1" and body["as_of"]


def test_a_global_bundle_predicts_a_symbol_it_never_trained_on_through_the_handler(
    universe_store: StoreSettings,
) -> None:
    # GIVEN a container over the global bundle, and the predict event aimed at a stock whose
    # features are stored but that is not in the bundle's training list
    module = import_handler(universe_store)
    ev = event("predict", "v2")
    ev["rawPath"] = ev["requestContext"]["http"]["path"] = f"/predict/{UNTRAINED}"
    # WHEN the handler is invoked
    response = module.handler(ev, LambdaContext())
    # THEN a forecast of 3 sessions for it, from the global bundle
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["symbol"] == UNTRAINED and body["model_version"] == "v-universe-1"
    assert all(len(v) == 3 for v in body["predictions"].values())
