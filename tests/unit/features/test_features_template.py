"""template.yaml's FeaturesFunction: runs after ingestion, reads raw/ and news/, writes features/ only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


class _Loader(yaml.SafeLoader):
    """Keeps CloudFormation short tags (!Ref, !Sub, !GetAtt ...) as {tag: value}."""


_Loader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: {
        suffix: loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
    },
)


@pytest.fixture(scope="module")
def function() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Resources"]["FeaturesFunction"][
        "Properties"
    ]  # noqa: S506


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
    ingest = yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Resources"]["IngestFunction"][
        "Properties"
    ]  # noqa: S506
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
    by_action: dict[str, set[str]] = {}
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for action in actions:
            by_action.setdefault(action, set()).update(
                r["Sub"] if "Sub" in r else str(r) for r in resources
            )
    # THEN it reads raw/, news/ and features/, and writes or deletes under features/ only
    assert by_action["s3:GetObject"] == {
        "${DataBucket.Arn}/raw/*",
        "${DataBucket.Arn}/news/*",
        "${DataBucket.Arn}/features/*",
    }
    assert by_action["s3:PutObject"] == {"${DataBucket.Arn}/features/*"}
    assert by_action["s3:DeleteObject"] == {"${DataBucket.Arn}/features/*"}
