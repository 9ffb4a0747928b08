"""Where the dashboard finds the API, and how it is launched (CLI, container)."""

from __future__ import annotations

import ast
import json
import shlex
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from stockml.dashboard import find_app, streamlit_command
from stockml.settings import DashboardSettings, Settings
from stockml_dashboard.config import DashboardConfig, load_config

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "dashboard"


def test_one_default_per_setting_in_yaml_dashboard_and_settings() -> None:
    # GIVEN the YAML section, the dashboard's code defaults and the package's settings defaults
    section = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())["dashboard"]
    code = asdict(DashboardConfig())
    settings = DashboardSettings().model_dump()
    # THEN they agree on every value they share
    for key in ("api_url", "timeout_s", "cache_ttl_s"):
        assert section[key] == code[key] == settings[key], key
    assert section["host"] == settings["host"] and section["port"] == settings["port"]
    # AND the dashboard reads the YAML when the environment says nothing
    assert load_config({}) == DashboardConfig()


def test_environment_overrides_yaml_and_the_key_comes_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a config folder whose YAML names another API (and, wrongly, a key)
    (tmp_path / "config.yaml").write_text(
        "dashboard:\n  api_url: http://yaml-api:9000/\n  timeout_s: 3\n  api_key: leaked\n"
    )
    env = {"STOCKML_CONFIG_DIR": str(tmp_path)}
    # WHEN only the YAML is set, THEN its values are used (trailing slash dropped, no key)
    assert load_config(env) == DashboardConfig(api_url="http://yaml-api:9000", timeout_s=3.0)
    # WHEN the environment sets them too, THEN the environment wins
    env |= {
        "STOCKML_DASHBOARD__API_URL": "https://api.example.com/prod",
        "STOCKML_DASHBOARD__CACHE_TTL_S": "5",
        "STOCKML_API_KEY": "secret",
    }
    cfg = load_config(env)
    assert cfg.api_url == "https://api.example.com/prod" and cfg.cache_ttl_s == 5.0
    assert cfg.api_key == "secret" and cfg.timeout_s == 3.0
    # AND the package's Settings read the same variable
    monkeypatch.setenv("STOCKML_DASHBOARD__API_URL", "https://api.example.com/prod")
    assert Settings().dashboard.api_url == "https://api.example.com/prod"


def test_a_bad_url_or_number_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        load_config({"STOCKML_DASHBOARD__API_URL": "ftp://x"})
    with pytest.raises(ValueError):
        load_config({"STOCKML_DASHBOARD__TIMEOUT_S": "soon"})


def test_the_launch_command_is_headless_offline_and_passes_url_and_key() -> None:
    # GIVEN a dashboard configuration and a key
    config = DashboardSettings(host="0.0.0.0", port=8600, api_url="http://api:8000")
    # WHEN the command is built
    argv, env = streamlit_command(find_app(), config, api_key="k")
    # THEN it runs this checkout's app with Streamlit, headless, without usage statistics
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(argv[4]) == DASHBOARD / "streamlit_app.py"
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "0.0.0.0" and flags["--server.port"] == "8600"
    # AND the dashboard gets the API's URL and key under the names it reads
    cfg = load_config(env)
    assert cfg.api_url == "http://api:8000" and cfg.api_key == "k"


def test_the_container_runs_the_same_app_with_the_same_flags() -> None:
    # GIVEN the Dockerfile (build context: dashboard/)
    text = (DASHBOARD / "Dockerfile").read_text().replace("\\\n", " ")
    steps = [
        (line.split(" ", 1)[0].upper(), line.split(" ", 1)[1].strip())
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]
    keywords = [k for k, _ in steps]
    # THEN every COPY source exists in the context and it runs unprivileged
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (DASHBOARD / source).exists(), source
    assert keywords.index("USER") < keywords.index("CMD")
    # AND its command is the launcher's, on 0.0.0.0:8501, with the health check on Streamlit's
    cmd = json.loads(next(a for k, a in steps if k == "CMD"))
    argv, _env = streamlit_command(
        find_app(), DashboardSettings(host="0.0.0.0", port=8501), api_key=None
    )
    assert cmd[:4] == ["python", "-m", "streamlit", "run"] and cmd[4] == "streamlit_app.py"
    assert dict(zip(cmd[5::2], cmd[6::2], strict=True)) == dict(
        zip(argv[5::2], argv[6::2], strict=True)
    )
    assert "/_stcore/health" in next(a for k, a in steps if k == "HEALTHCHECK")


def test_the_dashboard_imports_only_what_its_requirements_install() -> None:
    # GIVEN every module the dashboard's files import
    imported = set()
    for path in DASHBOARD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    # THEN each is the standard library, its own package or a listed requirement; never stockml
    requirements = {
        line.split(">")[0].split("=")[0].strip().lower()
        for line in (DASHBOARD / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    names = {"yaml": "pyyaml"}
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "stockml_dashboard"}
    assert "stockml" not in imported
    assert {names.get(m, m) for m in third_party} <= requirements


def test_the_container_requirements_match_the_dashboard_extra() -> None:
    # GIVEN the image's requirements and pyproject.toml's `dashboard` extra
    listed = {
        line.strip()
        for line in (DASHBOARD / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = set(project["optional-dependencies"]["dashboard"])
    # THEN they pin the same versions (the image adds pyyaml, which the package has anyway)
    assert listed - extra == {"pyyaml>=6"}
    assert extra <= listed
    assert "pyyaml>=6" in project["dependencies"]
