"""The training role's S3 policy (infra/training-batch.yaml), enforced by a real moto_server.

moto checks IAM policies once its auth is switched on (``/moto-api/reset-auth``): it matches
actions and object ARNs (not ``s3:prefix`` conditions, which the structural test in
tests/unit/test_training_container.py checks). The job's own read and write paths run with
the role's policy and nothing else: they must work, and the rest of the bucket must not.
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

from stockml.bundle import publish_bundle
from stockml.errors import StoreError
from stockml.features.config import FeatureConfig
from stockml.local import LocalServer, start_moto_server
from stockml.orchestration import load_dataset
from stockml.storage import Store
from utils.serving_bundle import BuiltBundle, embedded_bars

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def training_policy(bucket: str) -> dict[str, Any]:
    """The role's inline policy with its parameters resolved for ``bucket``."""
    loader = type("CfnLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor(
        "!", lambda ld, suffix, node: ld.construct_scalar(node) if suffix == "Sub" else None
    )
    template = yaml.load((REPO / "infra/training-batch.yaml").read_text(), Loader=loader)  # noqa: S506
    (policy,) = template["Resources"]["TrainingJobRole"]["Properties"]["Policies"]
    text = json.dumps(policy["PolicyDocument"])
    return json.loads(text.replace("${AWS::Partition}", "aws").replace("${BucketName}", bucket))


@pytest.fixture
def enforcing_server() -> Iterator[LocalServer]:
    """A moto_server of its own: its IAM enforcement is switched on for the whole server."""
    server = start_moto_server()
    yield server
    server.stop()


def test_the_training_role_can_do_the_jobs_work_and_nothing_else(
    enforcing_server: LocalServer,
    serving_bundle: BuiltBundle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, bucket = enforcing_server.url, f"train-{uuid.uuid4().hex[:8]}"
    # GIVEN (as an administrator) a bucket with raw bars, a quarantined row and features
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    admin = Store(bucket, endpoint_url=url)
    admin.upsert_bars(embedded_bars(300))
    admin.put_bytes("quarantine/raw/bad.json", b"{}")
    admin.put_bytes("features/_latest/symbol=MSFT/x.npz", b"x")
    # AND a user holding exactly the training role's policy
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
    iam.create_user(UserName="training")
    iam.put_user_policy(
        UserName="training",
        PolicyName="stockml-store",
        PolicyDocument=json.dumps(training_policy(bucket)),
    )
    key = iam.create_access_key(UserName="training")["AccessKey"]
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()  # enforce now
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    job = Store(bucket, endpoint_url=url)

    # WHEN the job's own steps run with it: features from raw bars (+ market, news) ...
    dataset = load_dataset(job, ["MSFT"], FeatureConfig())
    assert len(dataset.frame) > 100 and set(dataset.frame["symbol"]) == {"MSFT"}
    assert job.get_bytes("features/_latest/symbol=MSFT/x.npz") == b"x"
    # ... and the bundle and its champion pointer are published
    keys = publish_bundle(job, serving_bundle.folder, "v-iam", True, "passed")
    assert "models/champion.json" in keys
    assert json.loads(job.get_bytes("models/champion.json"))["version"] == "v-iam"

    # THEN everything outside its prefixes is refused: quarantine, writes to the data prefixes
    forbidden = [
        lambda: job.get_bytes("quarantine/raw/bad.json"),
        lambda: job.put_bytes("raw/x.parquet", b"x"),
        lambda: job.put_bytes("features/x.parquet", b"x"),
        lambda: job.put_bytes("news/x.parquet", b"x"),
        lambda: job.put_bytes("quarantine/x.json", b"x"),
    ]
    for action in forbidden:
        with pytest.raises(StoreError, match="AccessDenied"):
            action()
    # AND nothing can be deleted, not even its own bundles (delete_keys logs a refusal)
    with contextlib.suppress(StoreError):
        job.delete_keys(["models/champion.json"])
    assert json.loads(job.get_bytes("models/champion.json"))["version"] == "v-iam"
