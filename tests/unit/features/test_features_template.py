"""template.yaml's FeaturesFunction: runs after ingestion, reads raw/ and news/, writes features/ only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from utils.cfn import read_template, s3_access

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@pytest.fixture(scope="module")
def function() -> dict[str, Any]:
    return read_template(TEMPLATE)["Resources"]["FeaturesFunction"]["Properties"]


def _cron(properties: dict[str, Any]) -> tuple[int, int, str]:
    schedule = next(
        e["Properties"]["Schedule"]
        for e in properties["Events"].values()
        if e["Type"] == "Schedule"
    )
    minute, hour, _, _, weekdays, _ = schedule.removeprefix("cron(").removesuffix(")").split()
    return int(hour), int(minute), weekdays


def test_features_run_thirty_minutes_after_ingestion(function: dict[str, Any]) -> None:
    # GIVEN both schedules
    ingest = read_template(TEMPLATE)["Resources"]["IngestFunction"]["Properties"]
    # WHEN / THEN the features run on the same weekdays, 30 minutes later
    ih, im, iw = _cron(ingest)
    fh, fm, fw = _cron(function)
    assert fw == iw
    assert (fh * 60 + fm) - (ih * 60 + im) == 30
    assert function["CodeUri"] == "functions/features/"
    assert (TEMPLATE.parent / "functions/features/app.py").is_file()


def test_features_s3_access_is_least_privilege(function: dict[str, Any]) -> None:
    # GIVEN the inline S3 statements
    statements = [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]
    by_action = s3_access(statements)
    # THEN it reads raw/, news/ and features/, and writes or deletes under features/ only
    assert by_action["s3:GetObject"] == {
        "${DataBucket.Arn}/raw/*",
        "${DataBucket.Arn}/news/*",
        "${DataBucket.Arn}/features/*",
    }
    assert by_action["s3:PutObject"] == {"${DataBucket.Arn}/features/*"}
    assert by_action["s3:DeleteObject"] == {"${DataBucket.Arn}/features/*"}
