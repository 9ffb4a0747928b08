"""Build a Lambda function's zip folder whose heavy dependencies come from a layer.

    python functions/lambda_build.py --requirements requirements.txt --python-version 3.12 \\
        --target "$ARTIFACTS_DIR" [--source .]

`sam build` runs it for the ingest and features functions (template.yaml: ``BuildMethod:
makefile``, functions/Makefile). They run on python3.12 with the AWS SDK for pandas layer,
which brings numpy, pandas and pyarrow (and the runtime brings boto3): SAM's default
builder would install those again from the requirements' dependency tree, past Lambda's
250 MB limit.

So: resolve the requirements' whole tree for the function's platform (CPython
``--python-version``, manylinux wheels for Amazon Linux's glibc), drop what the layer and the
runtime provide (:data:`PROVIDED`), install the rest without further resolution, and copy the
handler's ``*.py`` files beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# provided at run time: numpy, pandas, pyarrow by the AWS SDK for pandas layer; boto3,
# botocore, s3transfer by the Lambda Python runtime
PROVIDED = {"numpy", "pandas", "pyarrow", "boto3", "botocore", "s3transfer"}
# the newest manylinux tag each runtime's glibc accepts (Amazon Linux 2: 2.26; 2023: 2.34)
PLATFORMS = {
    "3.11": ["manylinux2014_x86_64", "manylinux_2_17_x86_64"],
    "3.12": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_34_x86_64"],
}  # fmt: skip


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _pip_platform_args(python_version: str) -> list[str]:
    args = ["--implementation", "cp", "--python-version", python_version, "--only-binary=:all:"]
    for platform in PLATFORMS[python_version]:
        args += ["--platform", platform]
    return args


def resolve(requirements: Path, python_version: str) -> dict[str, str]:
    """The requirements' dependency tree for the Lambda platform: name -> version."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
             "--target", str(Path(tmp) / "target"), "--report", str(report),
             *_pip_platform_args(python_version), "-r", str(requirements)],
            check=True,
        )  # fmt: skip
        items = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in items}


def build(requirements: Path, python_version: str, target: Path, source: Path) -> list[str]:
    """Install the tree minus :data:`PROVIDED` into ``target``; returns what was installed."""
    tree = resolve(requirements, python_version)
    wanted = sorted(f"{n}=={v}" for n, v in tree.items() if _canonical(n) not in PROVIDED)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
         "--target", str(target), *_pip_platform_args(python_version), *wanted],
        check=True,
    )  # fmt: skip
    for handler in source.glob("*.py"):
        shutil.copy2(handler, target / handler.name)
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, required=True)
    parser.add_argument("--python-version", choices=sorted(PLATFORMS), required=True)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=Path("."))
    args = parser.parse_args()
    installed = build(args.requirements, args.python_version, args.target, args.source)
    print(f"{len(installed)} packages into {args.target} (without {sorted(PROVIDED)})")


if __name__ == "__main__":
    main()
