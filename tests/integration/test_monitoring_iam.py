"""The prediction API's and the monitor's S3 policies (template.yaml), enforced by a real
moto_server: the API writes its prediction log and nothing else; the monitor compacts it,
scores it and publishes, and can touch nothing else.

moto checks IAM policies once its auth is switched on (``/moto-api/reset-auth``): actions and
object ARNs (not the ``s3:prefix`` conditions of the ListBucket statements, which
tests/unit/test_monitor_template.py checks with the rest of the statements).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from stockml.bundle import read_bundle_dir
from stockml.errors import StoreError
from stockml.local import LocalServer, start_moto_server
from stockml.model_config import ModelConfig
from stockml.monitoring.monitor import run_monitor
from stockml.monitoring.replay import replay_forecasts
from stockml.predlog import PredictionLog
from stockml.s3 import Credentials, S3Writer
from stockml.settings import Settings, StoreSettings
from stockml.storage import Store
from utils.monitoring import SYMBOL, replay_window
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def function_policy(function: str, bucket: str) -> dict[str, Any]:
    """A template function's inline S3 statements, resolved for ``bucket``."""

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix in ("Sub", "GetAtt"):
                return value.replace("${DataBucket.Arn}", f"arn:aws:s3:::{bucket}").replace(
                    "DataBucket.Arn", f"arn:aws:s3:::{bucket}"
                )
            return value
        return None  # !If (the optional Batch statement), !Ref lists: not S3

    loader = type("CfnLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", tag)
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=loader)  # noqa: S506
    policies = template["Resources"][function]["Properties"]["Policies"]
    statements = [s for p in policies for s in p["Statement"] if s]
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture
def enforcing_server() -> Iterator[LocalServer]:
    """A moto_server of its own: its IAM enforcement is switched on for the whole server."""
    server = start_moto_server()
    yield server
    server.stop()


def user(url: str, name: str, policy: dict[str, Any]) -> Credentials:
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def test_the_api_logs_and_the_monitor_publishes_with_their_policies_alone(
    enforcing_server: LocalServer,
    serving_bundle: BuiltBundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, bucket = enforcing_server.url, f"mon-{uuid.uuid4().hex[:8]}"
    # GIVEN (as an administrator) the store the API serves from
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    publish(Store(bucket, endpoint_url=url), serving_bundle)
    # AND the two functions' users, holding exactly their policies
    api = user(url, "api", function_policy("PredictionFunction", bucket))
    monitor = user(url, "monitor", function_policy("MonitorFunction", bucket))
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()  # enforce now

    # WHEN the API serves MSFT's last 70 sessions: its prediction log writes with its policy
    writer = S3Writer(bucket, url, credentials=api)
    log = PredictionLog(writer, background=False)
    start, end = replay_window(serving_bundle, 70)
    features = serving_bundle.features[serving_bundle.features["symbol"] == SYMBOL]
    replay_forecasts(read_bundle_dir(serving_bundle.folder), features, start, end, log)
    assert log.flush() == 70 * 3 * 5
    # AND the API reads what the monitor publishes ... but writes nothing else, deletes nothing
    for key in (
        "models/x.json",
        "monitoring/status.json",
        "predictions/as_of=2017-11-10/p.parquet",
    ):
        with pytest.raises(StoreError, match="AccessDenied"):
            writer.put_bytes(key, b"x")

    # WHEN the monitor runs with its policy alone
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", monitor.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", monitor.secret_key)
    store = Store(bucket, endpoint_url=url)
    settings = Settings(store=StoreSettings(bucket=bucket, endpoint_url=url))
    result = run_monitor(store, settings, ModelConfig.from_yaml(), end.date())
    # THEN it compacted the log, scored it and published
    assert result["compaction"]["parts_written"] == 70
    assert result["status"]["live"]["v-test-1"]["window"]["sessions"] == 60
    assert "monitoring/status.json" in result["written"]
    # AND the API can read the status with its policy
    assert json.loads(S3Writer(bucket, url, credentials=api).get_bytes("monitoring/status.json"))
    # AND the monitor can write nothing outside its prefixes, nor delete its results
    forbidden = [
        lambda: store.put_bytes("models/champion.json", b"{}"),
        lambda: store.put_bytes("raw/x.parquet", b"x"),
        lambda: store.put_bytes("features/x.parquet", b"x"),
        lambda: store.put_bytes("quarantine/x.parquet", b"x"),
    ]
    for action in forbidden:
        with pytest.raises(StoreError, match="AccessDenied"):
            action()
    with contextlib.suppress(StoreError):  # delete_keys logs a refusal
        store.delete_keys(["monitoring/status.json", "models/v-test-1/manifest.json"])
    assert store.get_bytes("monitoring/status.json")
    assert store.get_bytes("models/v-test-1/manifest.json")
