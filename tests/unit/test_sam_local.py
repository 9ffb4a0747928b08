"""`sam local invoke`'s configuration: samconfig.toml names files that exist, and events/env.json
overrides only variables the template declares (SAM ignores any other, silently)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from stockml.cli import DEFAULT_LOCAL_PORT
from stockml.settings import Settings
from utils.lambda_artefact import template

REPO = Path(__file__).resolve().parents[2]


def _declared(resources: dict, name: str) -> set[str]:
    """Variables a function sees: the Globals' and its own."""
    glob = template()["Globals"]["Function"]["Environment"]["Variables"]
    own = resources[name]["Properties"].get("Environment", {}).get("Variables", {})
    return set(glob) | set(own)


def test_samconfig_local_commands_point_at_files_that_exist() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    local = {k: v for k, v in config["default"].items() if k.startswith("local_")}
    assert "local_invoke" in local
    for command, section in local.items():
        assert (REPO / section["parameters"]["env_vars"]).is_file(), command


def test_env_json_overrides_only_declared_variables_of_real_functions() -> None:
    # GIVEN events/env.json and the template's functions
    overrides = json.loads((REPO / "events/env.json").read_text())
    resources = template()["Resources"]
    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    for key, variables in overrides.items():
        # THEN "Parameters" (every function) and each function key name declared variables
        targets = functions if key == "Parameters" else [key]
        assert key == "Parameters" or key in functions, key
        for function in targets:
            undeclared = set(variables) - _declared(resources, function)
            assert undeclared == set(), (function, undeclared)


def test_env_json_points_settings_at_the_local_store() -> None:
    # GIVEN the variables sam local passes to every function
    variables = json.loads((REPO / "events/env.json").read_text())["Parameters"]
    # WHEN the functions build their settings from them
    settings = Settings(
        env=variables["STOCKML_ENV"],
        store={"bucket": variables["STOCKML_STORE__BUCKET"],
               "endpoint_url": variables["STOCKML_STORE__ENDPOINT_URL"]},
    )  # fmt: skip
    # THEN they talk to `stockml local up`'s moto_server and its bucket
    assert settings.store.endpoint_url == f"http://127.0.0.1:{DEFAULT_LOCAL_PORT}"
    assert settings.store.bucket == Settings().store.bucket
