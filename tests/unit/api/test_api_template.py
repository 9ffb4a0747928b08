"""template.yaml, prediction API section: zip packaging, gateway key/throttling, read-only IAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from utils.cfn import read_template

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template = read_template(REPO / "template.yaml")
    return template["Resources"]


def test_api_function_is_a_zip_with_the_package_layer_and_an_image_alternative(
    resources: dict[str, Any],
) -> None:
    props = resources["PredictionFunction"]["Properties"]
    # a zip (the default package type) of functions/api on python3.12, stockml from the layer
    assert props.get("PackageType", "Zip") == "Zip"
    assert props["CodeUri"] == "functions/api/" and props["Handler"] == "app.handler"
    assert props["Runtime"] == "python3.12"
    assert {"Ref": "StockmlPackageLayer"} in props["Layers"]
    # the container image alternative builds the same handler with the serving extra only
    dockerfile = REPO / "functions/api/Dockerfile"
    text = "\n".join(
        line for line in dockerfile.read_text().splitlines() if not line.startswith("#")
    )
    assert "[serving]" in text and 'CMD ["app.handler"]' in text
    assert not any(lib in text for lib in ("torch", "xgboost", "lightgbm", "mlflow"))


def test_gateway_requires_a_key_except_for_probes(resources: dict[str, Any]) -> None:
    api = resources["PredictionApi"]["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["UsagePlan"]["Throttle"]["RateLimit"] > 0
    events = resources["PredictionFunction"]["Properties"]["Events"]
    open_paths = {
        e["Properties"]["Path"]
        for e in events.values()
        if e["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
    }
    assert open_paths == {"/", "/health"}


def test_api_reads_models_features_and_monitoring_and_writes_only_its_log(
    resources: dict[str, Any],
) -> None:
    statements = [
        s for p in resources["PredictionFunction"]["Properties"]["Policies"] for s in p["Statement"]
    ]
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    objects = sorted(
        r["Sub"] for s in statements if s["Action"] == "s3:GetObject" for r in s["Resource"]
    )
    assert objects == [
        "${DataBucket.Arn}/features/*",
        "${DataBucket.Arn}/models/*",
        "${DataBucket.Arn}/monitoring/*",
    ]
    # the one write: new objects of the prediction log's incoming folder (no delete)
    writes = [s["Resource"]["Sub"] for s in statements if s["Action"] == "s3:PutObject"]
    assert writes == ["${DataBucket.Arn}/predictions/_incoming/*"]
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == ["features/*", "models/*"]
