"""Session-wide fixtures: one real moto_server (S3 over HTTP) for the whole run, moto's in-process
S3 for unit tests, shared data, a Lambda context.

A test that uses a server fixture (``moto_server``, ``mlflow_server``) is marked
``integration`` here, so ``make test-fast`` (``-m "not integration and not slow"``) never starts
one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockml.local import LocalServer, start_moto_server
from stockml.settings import Settings, StoreSettings
from utils.lambda_context import LambdaContext

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EVENTS = REPO / "events"

# boto3 must never reach AWS from the tests
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real third-party data); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (a fresh clone has no ../shared)")
    return SHARED_DATA


SERVER_FIXTURES = {"moto_server", "mlflow_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalServer]:
    """One real moto_server for the session."""
    from stockml.predlog import close_all

    server = start_moto_server()
    yield server
    close_all()  # what the apps' prediction logs still buffer, while the server is up
    server.stop()


@pytest.fixture
def store_settings(moto_server: LocalServer) -> StoreSettings:
    """A fresh, empty bucket on the session's moto_server for each test."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return StoreSettings(bucket=bucket, endpoint_url=moto_server.url)


@pytest.fixture
def mock_store_settings() -> Iterator[StoreSettings]:
    """A fresh, empty bucket in moto's in-process S3 (``mock_aws``): no server, for unit tests.

    Every botocore client created inside the test talks to it (the Store's included); the
    serving Lambda's standard-library reader (``stockml.s3.S3Reader``) needs ``moto_server``.
    """
    import boto3
    from moto import mock_aws

    with mock_aws():
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        yield StoreSettings(bucket=bucket, endpoint_url=None)


@pytest.fixture
def settings(store_settings: StoreSettings) -> Settings:
    """Settings pointing at a fresh bucket; everything else from configs/config.yaml."""
    return Settings(store=store_settings)


# the prediction API's session fixtures (one bundle build shared by its unit/functional/integration tests)
pytest_plugins = ["utils.api_fixtures", "utils.dashboard_fixtures"]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One real MLflow tracking server (SQLite backend) for the session."""
    from stockml.local import start_mlflow_server

    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture
def lambda_context() -> LambdaContext:
    """The context the Lambda runtime passes a handler (a new request id per test)."""
    return LambdaContext()
