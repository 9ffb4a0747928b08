"""Build a Lambda function's zip folder, or the stockml package layer's.

    python functions/lambda_build.py --requirements requirements.txt --python-version 3.12 \\
        --target "$ARTIFACTS_DIR" [--source .] [--copy configs] [--all-packages] [--compile]

`sam build` runs it for every function and the package layer (template.yaml: ``BuildMethod:
makefile``, functions/Makefile).

- The ingest, features and monitor functions run on python3.12 with the AWS SDK for pandas
  layer, which brings numpy, pandas and pyarrow (and the runtime brings boto3): SAM's default
  builder would install those again from the requirements' dependency tree, past Lambda's
  250 MB limit. So: resolve the requirements' whole tree for the function's platform (CPython
  ``--python-version``, manylinux wheels for Amazon Linux's glibc), drop what the layer and
  the runtime provide (:data:`PROVIDED`), install the rest without further resolution, and
  copy the handler's ``*.py`` files (and any ``--copy`` folder) beside them.
- The prediction API has no such layer (``--all-packages``: nothing is dropped) and is
  latency-bound, so its zip and the package layer ship bytecode (``--compile``): Lambda
  mounts the zip read-only, so without it every cold start compiles fastapi, pydantic,
  numpy... from source again. The bytecode is compiled by the runtime's own Python version
  (``python3.12`` on PATH) in unchecked-hash mode: a zip does not keep the sources' mtimes
  exactly, and its files never change once deployed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
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


def build(
    requirements: Path | None,
    python_version: str,
    target: Path,
    source: Path,
    copy: Sequence[str] = (),
    all_packages: bool = False,
    compile_bytecode: bool = False,
) -> list[str]:
    """Install the requirements' tree (minus :data:`PROVIDED` unless ``all_packages``) into
    ``target``, then the ``*.py`` files and the ``copy`` entries of ``source`` (symlinks
    followed); ``compile_bytecode``: then compile everything. Returns what pip installed."""
    target.mkdir(parents=True, exist_ok=True)
    wanted: list[str] = []
    if requirements is not None:
        tree = resolve(requirements, python_version)
        wanted = sorted(
            f"{n}=={v}" for n, v in tree.items() if all_packages or _canonical(n) not in PROVIDED
        )
        subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
             "--target", str(target), *_pip_platform_args(python_version), *wanted],
            check=True,
        )  # fmt: skip
    for handler in source.glob("*.py"):
        shutil.copy2(handler, target / handler.name)
    for name in copy:
        path = source / name
        if path.is_dir():
            shutil.copytree(
                path, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                dirs_exist_ok=True,
            )  # fmt: skip
        else:
            shutil.copy2(path, target / name)
    if compile_bytecode:
        compile_tree(target, python_version)
    return wanted


def compile_tree(target: Path, python_version: str) -> None:
    """Compile every ``*.py`` under ``target`` with ``python<python_version>`` (unchecked-hash
    pycs: used without looking at the sources' mtimes)."""
    python = shutil.which(f"python{python_version}")
    if python is None:
        raise SystemExit(
            f"--compile needs python{python_version} on PATH: bytecode is specific to the "
            "runtime's Python version"
        )
    subprocess.run(  # noqa: S603 - an interpreter of PATH, fixed arguments
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, help="none: the copied files only")
    parser.add_argument("--python-version", choices=sorted(PLATFORMS), required=True)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=Path("."))
    parser.add_argument(
        "--copy", action="append", default=[], help="a file or folder of --source to copy too"
    )
    parser.add_argument(
        "--all-packages", action="store_true", help=f"keep {sorted(PROVIDED)} (no pandas layer)"
    )
    parser.add_argument("--compile", action="store_true", help="ship bytecode (see above)")
    args = parser.parse_args()
    installed = build(
        args.requirements,
        args.python_version,
        args.target,
        args.source,
        copy=args.copy,
        all_packages=args.all_packages,
        compile_bytecode=args.compile,
    )
    dropped = (
        "" if args.all_packages or args.requirements is None else f" (without {sorted(PROVIDED)})"
    )
    compiled = ", compiled" if args.compile else ""
    print(f"{len(installed)} packages into {args.target}{dropped}{compiled}")


if __name__ == "__main__":
    main()
