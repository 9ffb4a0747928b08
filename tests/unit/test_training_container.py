"""The training container and its Batch job definition, checked without Docker or AWS."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from utils.cfn import read_template

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "training" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_builds_on_cuda_and_runs_the_job_entry_point():
    # GIVEN the Dockerfile's instructions
    steps = instructions()
    keywords = [k for k, _ in steps]

    # THEN it starts from a CUDA image, installs the training extras and runs training/job.py
    assert keywords[0] == "FROM" and steps[0][1].startswith("nvidia/cuda:")
    assert any(k == "RUN" and 'pip install ".[training,ingestion]"' in a for k, a in steps)
    entry = [a for k, a in steps if k == "ENTRYPOINT"]
    assert len(entry) == 1
    command = yaml.safe_load(entry[0])  # the exec form is a JSON list
    assert command[0] == "python" and (REPO / command[1]).is_file()
    # every COPY source exists in the build context (the repository root)
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), source
    # the job runs unprivileged
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_batch_job_definition_passes_cfn_lint_and_asks_for_a_gpu():
    # GIVEN the CloudFormation template of the Batch job
    template = REPO / "infra" / "training-batch.yaml"

    # WHEN cfn-lint (the venv's) checks it
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(template)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it is clean and the container asks for one GPU and gets the store bucket
    assert lint.returncode == 0, lint.stdout + lint.stderr
    body = read_template(template)
    container = body["Resources"]["TrainingJobDefinition"]["Properties"]["ContainerProperties"]
    assert {r["Type"] for r in container["ResourceRequirements"]} == {"VCPU", "MEMORY", "GPU"}
    assert "STOCKML_STORE__BUCKET" in {e["Name"] for e in container["Environment"]}


def test_job_entry_point_answers_help_on_cpu():
    # GIVEN the job entry point WHEN asked for help in a fresh process THEN it runs
    done = subprocess.run(
        [sys.executable, str(REPO / "training" / "job.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--symbols" in done.stdout


def test_training_role_is_limited_to_its_prefixes():
    # GIVEN the training role's S3 statements (short tags kept as {tag: value})
    body = read_template(REPO / "infra" / "training-batch.yaml")
    (policy,) = body["Resources"]["TrainingJobRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    bucket = "arn:${AWS::Partition}:s3:::${BucketName}"

    def resources(action: str) -> list[str]:
        out = []
        for s in statements:
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            if action in actions:
                listed = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                out += [r["Sub"] for r in listed]
        return sorted(out)

    # THEN it reads raw/, news/, features/ and models/, writes models/ only, deletes nothing
    assert resources("s3:GetObject") == [
        f"{bucket}/{p}/*" for p in ("features", "models", "news", "raw")
    ]
    assert resources("s3:PutObject") == [f"{bucket}/models/*"]
    assert resources("s3:DeleteObject") == []
    # AND it lists only those prefixes of the bucket
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"]["Sub"] == bucket
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == [
        "features/*",
        "models/*",
        "news/*",
        "raw/*",
    ]
    assert all(s["Effect"] == "Allow" and "*" not in str(s["Action"]) for s in statements)
