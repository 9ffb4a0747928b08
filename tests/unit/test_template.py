"""template.yaml: a current cfn-lint passes on the whole template, and its wiring is sound."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from utils.cfn import read_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return read_template(TEMPLATE)


def _cfn_lint() -> str:
    # the venv's cfn-lint: the system one is too old for python3.11 runtimes
    local = Path(sys.executable).with_name("cfn-lint")
    found = str(local) if local.is_file() else shutil.which("cfn-lint")
    if found is None:
        pytest.fail("cfn-lint is not installed (pip install -e '.[dev]')")
    return found


def test_cfn_lint_passes_on_the_whole_template() -> None:
    # GIVEN the project's template WHEN a current cfn-lint checks it
    result = subprocess.run(  # noqa: S603 - fixed argv
        [_cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    # THEN it reports no error and no warning
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_points_at_an_existing_handler(template: dict[str, Any]) -> None:
    # GIVEN every serverless function of the template
    functions = {
        name: res["Properties"]
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function" and "CodeUri" in res["Properties"]
    }
    assert functions, "the template defines no function"
    for name, props in functions.items():
        # WHEN its Handler is resolved inside CodeUri
        module, _, attr = props["Handler"].rpartition(".")
        source = REPO / props["CodeUri"] / (module.replace(".", "/") + ".py")
        # THEN the file exists and defines the handler
        assert source.is_file(), f"{name}: {source} is missing"
        # (a function, or a module-level callable such as the API's Mangum handler)
        text = source.read_text()
        assert f"def {attr}(" in text or f"\n{attr} = " in text, f"{name}: {attr} not in {source}"


def test_ingestion_is_scheduled_after_the_close_and_fans_out_with_a_dlq(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    # GIVEN the ingestion function
    function = resources["IngestFunction"]["Properties"]
    events = function["Events"]

    # THEN it runs on weekdays after the US close
    schedule = next(e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule")
    minute, hour, _, _, weekdays, _ = schedule.removeprefix("cron(").removesuffix(")").split()
    assert weekdays == "MON-FRI" and int(hour) >= 21  # 16:00 New York is 20:00/21:00 UTC

    # AND it consumes its own fan-out queue, reporting partial failures, with a DLQ behind it
    sqs = next(e["Properties"] for e in events.values() if e["Type"] == "SQS")
    queue = sqs["Queue"]["GetAtt"].split(".")[0]
    assert "ReportBatchItemFailures" in sqs["FunctionResponseTypes"]
    redrive = resources[queue]["Properties"]["RedrivePolicy"]
    assert (
        resources[redrive["deadLetterTargetArn"]["GetAtt"].split(".")[0]]["Type"]
        == "AWS::SQS::Queue"
    )
    assert function["Environment"]["Variables"]["STOCKML_INGEST__QUEUE_URL"] == {"Ref": queue}


def test_ingestion_s3_access_is_limited_to_raw_and_quarantine(template: dict[str, Any]) -> None:
    # GIVEN the ingestion function's inline S3 statements
    policies = template["Resources"]["IngestFunction"]["Properties"]["Policies"]
    statements = [
        s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]
    ]
    object_resources = [
        r["Sub"] for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]
    ]
    # THEN objects can be written under raw/ and quarantine/ only, never the whole bucket
    assert sorted(object_resources) == ["${DataBucket.Arn}/quarantine/*", "${DataBucket.Arn}/raw/*"]
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == ["quarantine/*", "raw/*"]
    assert not any(s["Action"] == "s3:*" or s.get("Resource") == "*" for s in statements)


def test_the_ingest_message_markers_expire_where_the_function_writes_them(
    template: dict[str, Any],
) -> None:
    # GIVEN where the ingest function keeps one marker per SQS message (default raw prefix)
    from stockml.idempotency import marker_key
    from stockml.storage import Store

    folder = marker_key(Store("bucket"), "id").rsplit("/", 1)[0] + "/"
    # THEN the data bucket's lifecycle expires exactly that folder, and the function may write it
    rules = template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [r["Prefix"] for r in rules if r["Status"] == "Enabled"] == [folder]
    statements = [
        s
        for policy in template["Resources"]["IngestFunction"]["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for s in policy["Statement"]
    ]
    writable = [
        r["Sub"] for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]
    ]
    assert any(folder.startswith(r.split("}/", 1)[1].rstrip("*")) for r in writable)
