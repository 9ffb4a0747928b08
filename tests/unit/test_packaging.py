"""Packaging: the license, the dependency split into extras, the API zip's requirements, and
the Dockerfiles' build contexts."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from importlib.metadata import metadata, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from utils.lambda_artefact import closure

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
# what the prediction API must never carry: the data stack, the SDK, training, the CLI
NOT_IN_THE_API = {
    "pandas", "pyarrow", "boto3", "botocore", "awswrangler", "s3transfer", "exchange-calendars",
    "torch", "xgboost", "lightgbm", "scikit-learn", "mlflow", "typer", "rich", "uvicorn",
}  # fmt: skip


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_license_is_mit_by_spdx_expression() -> None:
    # GIVEN the installed package's metadata and the LICENSE file
    meta = metadata("stockml")
    # THEN the license is an SPDX expression (not the deprecated table) and the file ships
    assert PROJECT["license"] == "MIT" and meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_the_api_zip_requirements_are_core_plus_the_serving_extra() -> None:
    # GIVEN the requirements `sam build` installs into the API zip
    lines = (REPO / "functions/api/requirements.txt").read_text().splitlines()
    zipped = {str(Requirement(line)) for line in lines if line.strip() and not line.startswith("#")}
    # THEN they are exactly stockml's core dependencies and its serving extra
    expected = {str(Requirement(r)) for r in PROJECT["dependencies"] + EXTRAS["serving"]}
    assert zipped == expected


def test_core_plus_serving_installs_none_of_the_data_training_or_cli_stacks() -> None:
    # GIVEN the installed dependency closure of stockml[serving]
    installed = set(closure("stockml[serving]"))
    assert {"fastapi", "onnxruntime", "numpy", "pydantic"} <= installed  # the closure is real
    # THEN none of the heavy stacks is in it
    assert installed & NOT_IN_THE_API == set()
    # AND they are where the split puts them
    assert {"pandas", "pyarrow", "boto3", "awswrangler"} <= _names(EXTRAS["data"])
    assert {"typer", "uvicorn"} <= _names(EXTRAS["cli"])


def _imported_top_modules(*trees: str) -> set[str]:
    found: set[str] = set()
    for tree in trees:
        for path in (REPO / tree).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("group", ["core", "data", "serving", "cli"])
def test_every_dependency_of_a_runtime_group_is_imported_by_the_code(group: str) -> None:
    # GIVEN a dependency group and the modules the code imports
    requirements = PROJECT["dependencies"] if group == "core" else EXTRAS[group]
    imported = _imported_top_modules("src", "functions", "training")
    by_module = packages_distributions()
    imported_dists = {canonicalize_name(d) for m in imported for d in by_module.get(m, [])}
    # THEN each of its packages is imported somewhere (tzdata: zoneinfo's data, not imported)
    unused = {
        name
        for name in _names([r for r in requirements if not r.startswith("stockml")])
        if name not in imported_dists and name != "tzdata"
    }
    assert unused == set(), f"{group}: declared but imported nowhere"


@pytest.mark.parametrize("dockerfile", ["functions/api/Dockerfile", "training/Dockerfile"])
def test_dockerfiles_copy_what_building_the_package_needs(dockerfile: str) -> None:
    # GIVEN a Dockerfile that pip-installs the project from its build context
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    copied = {
        Path(source).name
        for line in text.splitlines()
        if line.strip().upper().startswith("COPY ")
        for source in shlex.split(line.strip())[1:-1]
    }
    # THEN pyproject.toml and every file it names (readme, license files) and src/ are copied
    needed = {"pyproject.toml", PROJECT["readme"], *PROJECT["license-files"], "src"}
    assert needed <= copied, needed - copied
    assert re.search(r"pip install [^\n]*\[", text), "installs the project with its extras"
