"""CI/CD configuration: the GitHub workflows, pre-commit, the Makefile targets they call, the
release notes. Checked offline: the workflows against the GitHub workflow JSON schema that
check-jsonschema vendors, then what they must do, read from their YAML."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent

sys.path.insert(0, str(REPO / ".github" / "scripts"))
import release_notes  # noqa: E402


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def _runs(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))


def _check_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    # GIVEN the repository's workflows
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml"}
    # WHEN they are checked against GitHub's workflow schema
    result = _check_schema(*files)
    # THEN every one is valid
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # GIVEN the CI workflow with one job's runner removed and a step with an unknown key
    broken = _workflow("ci.yml")
    broken[True] = broken.pop("on")
    del broken["jobs"]["lint"]["runs-on"]
    broken["jobs"]["test"]["steps"][0]["usez"] = "actions/checkout@v4"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    # WHEN it is checked THEN the check fails: the schema test above can fail
    assert _check_schema(path).returncode != 0


def test_ci_runs_lint_types_tests_on_both_pythons_slow_tests_apart_and_security() -> None:
    ci = _workflow("ci.yml")
    jobs = ci["jobs"]
    # on every push and pull request
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    # lint = ruff + format + mypy, the same `make lint` as .ci/run
    assert any("make lint" in run for run in _runs({"jobs": {"lint": jobs["lint"]}}))
    # the tests on Python 3.11 and 3.12, each allowed by requires-python
    versions = jobs["test"]["strategy"]["matrix"]["python-version"]
    assert versions == ["3.11", "3.12"]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert all(f"{v}.0" in SpecifierSet(requires) for v in versions)
    # the fast tests with branch coverage, the slow ones in their own job: every test runs once
    fast = " ".join(_runs({"jobs": {"test": jobs["test"]}}))
    slow = " ".join(_runs({"jobs": {"slow": jobs["slow"]}}))
    assert '-m "not slow"' in fast and "--cov=stockml" in fast and "--cov-branch" in fast
    assert "-m slow" in slow
    # bandit and pip-audit through `make security`
    assert any("make security" in run for run in _runs({"jobs": {"sec": jobs["security"]}}))


def test_release_builds_both_images_packages_sam_and_publishes_the_changelog() -> None:
    release = _workflow("release.yml")
    # on version tags only
    assert release["on"] == {"push": {"tags": ["v*.*.*"]}}
    jobs = release["jobs"]
    # both images, from Dockerfiles that exist, built from the repository root
    images = jobs["images"]["strategy"]["matrix"]["include"]
    assert {i["image"] for i in images} == {"api", "training"}
    for image in images:
        assert (REPO / image["dockerfile"]).is_file(), image
    runs = " ".join(_runs(release))
    assert "sam build" in runs and "sam package" in runs
    # the notes come from CHANGELOG.md through the script tested below
    assert "release_notes.py" in runs and "gh release create" in runs
    assert set(jobs["release"]["needs"]) == {"images", "sam"}


def test_workflow_steps_use_pinned_actions_and_existing_make_targets() -> None:
    targets = _make_targets()
    for path in WORKFLOWS.glob("*.yml"):
        workflow = _workflow(path.name)
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                # every action is pinned to a release, never a branch
                if "uses" in step:
                    assert re.search(r"@v\d+(\.\d+)*$", step["uses"]), (path.name, step["uses"])
                # every `make X` names a target of the Makefile
                for target in re.findall(r"\bmake ([\w-]+)", step.get("run", "")):
                    assert target in targets, (path.name, target)


def test_ci_script_lints_and_runs_exactly_the_readme_test_command() -> None:
    # GIVEN README's test command and .ci/run's commands
    readme = (REPO / "README.md").read_text()
    test_command = re.search(r"\*\*2\. Run the tests:\*\*\s+```bash\n(.+?)\n```", readme, re.S)
    assert test_command is not None
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # THEN .ci/run runs it, and `make lint` beside it
    assert test_command.group(1).strip() in commands
    assert "make lint" in commands
    # AND `make lint` is ruff check + ruff format --check + mypy
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert lint is not None
    recipe = [shlex.split(line.strip())[:3] for line in lint.group(1).splitlines()]
    assert ["$(BIN)/ruff", "check"] in [r[:2] for r in recipe]
    assert ["$(BIN)/ruff", "format", "--check"] in recipe
    assert ["$(BIN)/mypy"] in [r[:1] for r in recipe]


def test_pre_commit_config_is_valid_and_its_local_hooks_exist() -> None:
    config = REPO / ".pre-commit-config.yaml"
    result = subprocess.run(  # noqa: S603 - fixed argv
        [_tool("pre-commit"), "validate-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = [
        hook
        for repo in yaml.safe_load(config.read_text())["repos"]
        if repo["repo"] == "local"
        for hook in repo["hooks"]
    ]
    # the project's own tools, the ones `make lint` runs
    assert {h["id"] for h in hooks} >= {"ruff-check", "ruff-format", "mypy"}
    for hook in hooks:
        executable = Path(shlex.split(hook["entry"])[0])
        assert executable.parts[0] == ".venv", hook["entry"]
        assert (BIN / executable.name).is_file(), hook["entry"]


# --- release notes ---

CHANGELOG = """# Changelog

## [Unreleased]
- next

## [1.2.0] - 2026-01-02
### Added
- thing one

## [1.1.0] - 2025-12-01
- older
"""


def test_release_notes_are_the_tag_versions_section() -> None:
    assert release_notes.section(CHANGELOG, "v1.2.0") == "### Added\n- thing one"
    assert release_notes.section(CHANGELOG, "1.1.0") == "- older"
    # a prefix of another version does not match it
    with pytest.raises(LookupError, match=r"\[1\.2\]"):
        release_notes.section(CHANGELOG, "v1.2")


def test_release_notes_refuse_a_missing_or_empty_section() -> None:
    with pytest.raises(LookupError, match="no section"):
        release_notes.section(CHANGELOG, "v9.0.0")
    with pytest.raises(LookupError, match="empty"):
        release_notes.section("## [2.0.0]\n\n## [1.0.0]\n- x\n", "v2.0.0")


def test_the_changelog_has_notes_for_the_packages_version() -> None:
    # GIVEN the version the next release tag names
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    # WHEN the release script runs for it
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, str(REPO / ".github/scripts/release_notes.py"), f"v{version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it prints that version's section of CHANGELOG.md
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_readme_badges_show_workflows_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    badges = re.findall(r"actions/workflows/([\w.-]+)/badge\.svg", readme)
    assert set(badges) == {"ci.yml", "release.yml"}
    assert all((WORKFLOWS / name).is_file() for name in badges)
