"""template.yaml's MonitorFunction: after the features job, least privilege, Batch only if named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from utils.cfn import read_template, s3_access

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return read_template(TEMPLATE)


def _minutes(properties: dict[str, Any]) -> tuple[int, str]:
    schedule = next(
        e["Properties"]["Schedule"]
        for e in properties["Events"].values()
        if e["Type"] == "Schedule"
    )
    minute, hour, _, _, weekdays, _ = schedule.removeprefix("cron(").removesuffix(")").split()
    return int(hour) * 60 + int(minute), weekdays


def _statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in properties["Policies"] for s in p["Statement"]]


def test_the_monitor_runs_after_the_features_job_on_the_same_days(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    monitor = resources["MonitorFunction"]["Properties"]
    features, days = _minutes(resources["FeaturesFunction"]["Properties"])
    at, monitor_days = _minutes(monitor)
    assert monitor_days == days and at - features == 30
    assert monitor["CodeUri"] == "functions/monitor/"
    assert (TEMPLATE.parent / "functions/monitor/app.py").is_file()
    assert monitor["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "stockml"


def test_the_monitor_s3_access_is_least_privilege(template: dict[str, Any]) -> None:
    by_action = s3_access(_statements(template["Resources"]["MonitorFunction"]["Properties"]))
    arn = "${DataBucket.Arn}"
    # THEN it reads the data, the models and its own outputs ...
    assert by_action["s3:GetObject"] == {
        f"{arn}/{p}/*"
        for p in ("raw", "features", "quarantine", "models", "predictions", "monitoring")
    }
    # ... writes only the prediction log (compaction) and its results ...
    assert by_action["s3:PutObject"] == {f"{arn}/predictions/*", f"{arn}/monitoring/*"}
    # ... and deletes only what compaction covered and a withdrawn retraining claim
    assert by_action["s3:DeleteObject"] == {f"{arn}/predictions/*", f"{arn}/monitoring/retrain/*"}
    assert set(by_action) == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}


def test_batch_submission_is_granted_only_for_the_named_job(template: dict[str, Any]) -> None:
    properties = template["Resources"]["MonitorFunction"]["Properties"]
    conditional = [s["If"] for s in _statements(properties) if "If" in s]
    assert len(conditional) == 1
    condition, statement, otherwise = conditional[0]
    assert condition == "HasTrainingJob" and otherwise == {"Ref": "AWS::NoValue"}
    assert statement["Action"] == "batch:SubmitJob"
    assert statement["Resource"] == [{"Ref": "TrainingJobQueue"}, {"Ref": "TrainingJobDefinition"}]
    variables = properties["Environment"]["Variables"]
    assert variables["STOCKML_MONITORING__RETRAIN__BATCH_JOB_QUEUE"] == {"Ref": "TrainingJobQueue"}
    assert variables["STOCKML_MONITORING__RETRAIN__BATCH_JOB_DEFINITION"] == {
        "Ref": "TrainingJobDefinition"
    }
