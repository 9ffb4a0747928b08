"""The monitor Lambda (functions/monitor/app.py) invoked in-process with the events of
events/monitor_*.json, against a real moto_server for S3 and AWS Batch: the run's figures go
out as CloudWatch EMF metrics and a retraining submits the training job once."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from stockml.local import LocalServer
from stockml.storage import Store
from utils.api_fixtures import new_bucket
from utils.monitoring import replay, replay_window
from utils.serving_bundle import BuiltBundle, publish

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"


@dataclass
class LambdaContext:
    function_name: str = "stockml-dev-MonitorFunction"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:stockml-dev-MonitorFunction"
    )
    aws_request_id: str = "0b7e1b43-6f5c-4b8e-9a0e-2c7e4a1f9d21"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def batch(moto_server: LocalServer) -> tuple[Any, str, str]:
    """A Batch job queue and the training job definition, on the moto_server."""
    iam = boto3.client("iam", endpoint_url=moto_server.url, region_name="us-east-1")
    name = f"train-{id(object())}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    client = boto3.client("batch", endpoint_url=moto_server.url, region_name="us-east-1")
    env = client.create_compute_environment(
        computeEnvironmentName=name, type="UNMANAGED", serviceRole=role
    )
    queue = client.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )["jobQueueArn"]
    definition = client.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": "stockml-training:0.1.0",
            "command": ["--symbols", "MSFT"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "4"},
                {"type": "MEMORY", "value": "16384"},
            ],
        },
    )["jobDefinitionArn"]
    return client, queue, definition


@pytest.fixture
def handler(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: LocalServer,
    serving_bundle: BuiltBundle,
    batch: tuple[Any, str, str],
) -> ModuleType:
    # GIVEN a store where the bundle served MSFT's last 70 sessions
    store_settings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    replay(store, serving_bundle, *replay_window(serving_bundle, 70))
    # the variables template.yaml sets on MonitorFunction (and Globals)
    _client, queue, definition = batch
    monkeypatch.setenv("STOCKML_STORE__BUCKET", store_settings.bucket)
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("STOCKML_MONITORING__RETRAIN__BATCH_JOB_QUEUE", queue)
    monkeypatch.setenv("STOCKML_MONITORING__RETRAIN__BATCH_JOB_DEFINITION", definition)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", moto_server.url)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stockml-monitor")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "stockml")
    spec = importlib.util.spec_from_file_location("monitor_app", REPO / "functions/monitor/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.store_settings = store_settings
    return module


def emf(stdout: str) -> dict[str, tuple[float, dict[str, str]]]:
    """The EMF metrics printed by Powertools: ``{name[model]: (value, dimensions)}``."""
    out = {}
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "stockml"
            dimensions = {d: blob[d] for d in directive["Dimensions"][0]}
            for metric in directive["Metrics"]:
                name = metric["Name"]
                key = f"{name}[{dimensions['model']}]" if "model" in dimensions else name
                value = blob[name]  # one value, or a list of the values added
                out[key] = (value[0] if isinstance(value, list) else value, dimensions)
    return out


def test_a_manual_run_publishes_emf_metrics_and_submits_one_training_job(
    handler: ModuleType, batch: tuple[Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, queue, _definition = batch
    # WHEN the monitor Lambda runs as of the replay's last session
    capsys.readouterr()
    summary = handler.lambda_handler(load_event("monitor_manual.json"), LambdaContext())
    metrics = emf(capsys.readouterr().out)
    # THEN the run's figures went out as EMF metrics, the live ones per model
    store = Store.from_settings(handler.store_settings)
    status = json.loads(store.get_bytes("monitoring/status.json"))
    ensemble = status["live"]["v-test-1"]["models"]["ensemble"]["1"]
    value, dimensions = metrics["LiveRmseRatioVsNaive[ensemble]"]
    assert value == pytest.approx(ensemble["rmse_ratio_vs_naive"])
    assert dimensions["service"] == "stockml-monitor"
    assert metrics["LiveIntervalCoverage[lstm]"][0] == pytest.approx(
        status["live"]["v-test-1"]["models"]["lstm"]["1"]["interval_coverage"]
    )
    assert metrics["StaleSymbols"][0] == 0 and metrics["RetrainDecision"][0] == 1
    assert metrics["DriftedFeatureShare"][0] == pytest.approx(status["drift"]["drifted_share"])
    # AND the retraining went to AWS Batch: the training job for the bundle's symbols
    assert summary["retrain"]["trigger"]["state"] == "triggered"
    job_id = summary["retrain"]["trigger"]["result"]["job_id"]
    (job,) = client.describe_jobs(jobs=[job_id])["jobs"]
    assert job["container"]["command"] == ["--symbols", "MSFT,^GSPC"]
    # AND EventBridge delivering the run again starts no second job
    again = handler.lambda_handler(load_event("monitor_manual.json"), LambdaContext())
    assert again["written"] == [] and again["retrain"]["trigger"]["result"]["job_id"] == job_id
    listed = client.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["*"]}])
    assert len(listed["jobSummaryList"]) == 1


def test_the_scheduled_run_reports_a_stale_feed(
    handler: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the scheduled event: as of the last completed session (today, years after the
    # embedded data ends)
    capsys.readouterr()
    summary = handler.lambda_handler(load_event("monitor_schedule.json"), LambdaContext())
    metrics = emf(capsys.readouterr().out)
    # THEN every symbol is stale, nothing is scored (no forecast that recent), nothing retrains
    store = Store.from_settings(handler.store_settings)
    status = json.loads(store.get_bytes("monitoring/status.json"))
    assert status["freshness"]["stale"] == ["MSFT", "^GSPC"]
    assert metrics["StaleSymbols"][0] == 2
    assert summary["retrain"]["retrain"] is False and status["live"] == {}
