"""The SAM application with the real SAM CLI: `sam validate --lint`, `sam build` of every
function, the API zip serving every endpoint and the features zip running its handler, each
from a bare interpreter (no site-packages) of its runtime, as Lambda runs them. The SAM CLI lives in its own venv (`make sam-venv`; `.ci/run` installs it); without
it these tests skip and say so. No Docker is needed: nothing here runs `sam local`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import textwrap
import tomllib
from datetime import date
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from stockml.local import LocalServer
from stockml.settings import StoreSettings
from stockml.storage import Store
from utils.api_fixtures import API_KEY, ENDPOINTS, new_bucket
from utils.lambda_artefact import (
    REPO,
    SAM,
    ZIP_LIMIT_MB,
    api_runtime,
    find_python,
    sam_build,
    sam_env,
    template,
    tree_mb,
)
from utils.lambda_context import context_source
from utils.monitoring import replay, replay_window
from utils.sample_data import sample_bars
from utils.serving_bundle import BuiltBundle, publish


def _provided() -> set[str]:
    """functions/lambda_build.py's PROVIDED: what the zips leave to the layer and runtime."""
    spec = importlib.util.spec_from_file_location(
        "lambda_build", REPO / "functions/lambda_build.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.PROVIDED)


PROVIDED = _provided()

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not SAM.is_file(),
        reason="aws-sam-cli is not installed: `make sam-venv` puts it in .venv-sam (its own "
        "venv: it pins older boto3/click/pydantic than the project)",
    ),
]

HEAVY = ["pandas", "pyarrow", "boto3", "botocore", "awswrangler", "torch", "xgboost", "mlflow"]


@pytest.fixture(scope="module")
def api_python() -> Path:
    """An interpreter of the API function's runtime (sam's builder needs the same version)."""
    version = api_runtime().removeprefix("python")
    python = find_python(version)
    if python is None:
        pytest.skip(f"no python{version} interpreter here to build the {api_runtime()} function")
    return python


def test_sam_validate_with_lint_passes(api_python: Path) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv
        [str(SAM), "validate", "--lint"],
        cwd=REPO,
        env=sam_env(api_python),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def api_build(api_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the whole template (every function and the package layer)."""
    build = tmp_path_factory.mktemp("sam") / "build"
    result = sam_build(build, api_python)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build


def test_the_api_zip_is_within_lambdas_limit_and_carries_no_heavy_stack(api_build: Path) -> None:
    # GIVEN the built function and the layer it uses
    function, layer = api_build / "PredictionFunction", api_build / "StockmlPackageLayer"
    # THEN together they fit Lambda's unzipped limit
    assert tree_mb(function) + tree_mb(layer) <= ZIP_LIMIT_MB
    # AND neither the data stack nor training nor the SDK is inside
    assert [name for name in HEAVY if (function / name).exists()] == []
    # AND the configs travel with it, where the template's STOCKML_CONFIG_DIR says
    env = template()["Resources"]["PredictionFunction"]["Properties"]["Environment"]["Variables"]
    config_dir = Path(env["STOCKML_CONFIG_DIR"].replace("/var/task", str(function)))
    assert (config_dir / "config.yaml").read_text() == (REPO / "configs/config.yaml").read_text()


def test_the_built_zip_serves_every_endpoint_in_a_bare_interpreter(
    api_build: Path, api_python: Path, serving_store: StoreSettings
) -> None:
    # GIVEN the zip's folders as Lambda mounts them (/var/task, /opt/python) and nothing else
    function = api_build / "PredictionFunction"
    layer = api_build / "StockmlPackageLayer" / "python"
    variables = template()["Resources"]["PredictionFunction"]["Properties"]["Environment"]
    code = textwrap.dedent(
        f"""
        import json, sys, sysconfig
        sys.path[:0] = [{str(function)!r}, {str(layer)!r}]
        import app

        {context_source("stockml-api", "zip")}

        statuses = {{}}
        for name in {ENDPOINTS!r}:
            event = json.load(open(f"events/api_{{name}}_v2.json"))
            statuses[name] = app.handler(event, context)["statusCode"]
        allowed = ({str(function)!r}, {str(layer)!r}, sysconfig.get_paths()["stdlib"])
        outside = sorted(
            m.__name__ for m in list(sys.modules.values())
            if getattr(m, "__file__", None) and not m.__file__.startswith(allowed)
        )
        print(json.dumps({{"statuses": statuses, "outside": outside}}))
        """
    )
    # WHEN a fresh interpreter without site-packages (-S) imports the handler and serves
    result = run_bare(
        api_python,
        code,
        serving_store,
        STOCKML_CONFIG_DIR=variables["Variables"]["STOCKML_CONFIG_DIR"].replace(
            "/var/task", str(function)
        ),
        STOCKML_API_KEY=API_KEY,
        STOCKML_API__RATE_LIMIT_PER_MINUTE="0",
    )
    # THEN every endpoint answers 200, from modules of the zip, the layer and the stdlib only
    assert result["statuses"] == dict.fromkeys(ENDPOINTS, 200)
    assert result["outside"] == []


def run_bare(python: Path, code: str, store: StoreSettings, **variables: str) -> Any:
    """Run ``code`` in ``python -S`` (no site-packages, as on Lambda) against ``store``, with
    the credentials Lambda puts in a function's environment; returns its last printed line,
    parsed as JSON."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "STOCKML_STORE__BUCKET": store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(store.endpoint_url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **variables,
    }
    out = subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-S", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _layer_stand_in(folder: Path, python: Path) -> Path:
    """What the AWS SDK for pandas layer and the runtime provide, for ``python``: the versions
    this venv has, installed (binary wheels for that interpreter) into ``folder``."""
    pins = [f"{name}=={distribution(name).version}" for name in sorted(PROVIDED)]
    subprocess.run(  # noqa: S603 - the interpreter's own pip, pinned names
        [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", "--target",
         str(folder), *pins],
        check=True,
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    return folder


def test_the_data_zips_leave_the_data_stack_to_the_layer_and_run(
    api_build: Path, api_python: Path, store_settings: StoreSettings, tmp_path: Path
) -> None:
    # GIVEN the built ingest and features functions (the API's runtime) and a store holding
    # MSFT's raw bars
    python = api_python
    for name in ("IngestFunction", "FeaturesFunction"):
        function = api_build / name
        assert (function / "app.py").is_file(), name
        # THEN neither carries what the layer and the runtime provide
        assert sorted(p for p in PROVIDED if (function / p).exists()) == [], name
    Store.from_settings(store_settings).upsert_bars(sample_bars("MSFT", start=date(2015, 1, 1)))
    stand_in = _layer_stand_in(tmp_path / "aws-sdk-pandas", python)
    code = textwrap.dedent(
        f"""
        import json, sys, importlib.util
        layers = [{str(api_build / "StockmlPackageLayer" / "python")!r}, {str(stand_in)!r}]

        def load(folder):
            sys.path[:0] = [folder, *layers]
            spec = importlib.util.spec_from_file_location(folder, folder + "/app.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module

        {context_source("stockml-features", "zip")}

        load({str(api_build / "IngestFunction")!r})
        features = load({str(api_build / "FeaturesFunction")!r})
        event = json.load(open("events/features_manual.json"))
        print(json.dumps(features.lambda_handler(event, context)))
        """
    )
    # WHEN a bare interpreter imports the ingest handler and runs the features handler
    report = run_bare(python, code, store_settings)
    # THEN the features of MSFT are written
    assert report["rows"]["MSFT"] > 0, report


def test_the_monitor_zip_scores_a_replay_without_scipy(
    api_build: Path,
    api_python: Path,
    moto_server: LocalServer,
    serving_bundle: BuiltBundle,
    tmp_path: Path,
) -> None:
    # GIVEN the built monitor function, and a store where the bundle served MSFT's last 70
    # sessions of the embedded data
    python = api_python
    function = api_build / "MonitorFunction"
    assert (function / "app.py").is_file()
    # THEN it carries neither what the layer and the runtime provide nor SciPy
    assert sorted(p for p in {*PROVIDED, "scipy"} if (function / p).exists()) == []
    store_settings = new_bucket(moto_server)
    store = Store.from_settings(store_settings)
    publish(store, serving_bundle)
    replay(store, serving_bundle, *replay_window(serving_bundle, 70))
    stand_in = _layer_stand_in(tmp_path / "aws-sdk-pandas", python)
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [
            {str(function)!r},
            {str(api_build / "StockmlPackageLayer" / "python")!r},
            {str(stand_in)!r},
        ]
        import app

        {context_source("stockml-monitor", "zip")}

        summary = app.lambda_handler(json.load(open("events/monitor_manual.json")), context)
        print(json.dumps({{"summary": summary, "scipy": "scipy" in sys.modules}}))
        """
    )
    # WHEN a bare python3.12 runs the monitor handler on the manual event
    result = run_bare(python, code, store_settings, POWERTOOLS_METRICS_NAMESPACE="stockml")
    # THEN it scored the replay, published its status, and imported no SciPy
    assert result["scipy"] is False
    assert result["summary"]["run_date"] == "2017-11-10"
    assert "monitoring/status.json" in result["summary"]["written"]
    status = json.loads(store.get_bytes("monitoring/status.json"))
    assert status["live"]["v-test-1"]["window"]["sessions"] == 60


def test_samconfig_sets_only_options_its_commands_have(api_python: Path) -> None:
    # GIVEN samconfig.toml's sections: <env>.<command>.parameters, where the command's words
    # are joined by "_" (local_start_api = `sam local start-api`)
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    sections = {
        (env_name, command): section["parameters"]
        for env_name, commands in config.items()
        if env_name != "version"
        for command, section in commands.items()
        if command != "global"
    }
    assert ("default", "local_invoke") in sections
    helps: dict[str, str] = {}
    for (env_name, command), parameters in sections.items():
        words = (
            ["local", command[6:].replace("_", "-")]
            if command.startswith("local_")
            else [command.replace("_", "-")]
        )
        # WHEN the SAM CLI describes that command
        if command not in helps:
            helps[command] = subprocess.run(  # noqa: S603 - fixed argv
                [str(SAM), *words, "--help"],
                env=sam_env(api_python),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
        # THEN every key is one of its options
        for key in parameters:
            assert f"--{key.replace('_', '-')}" in helps[command], (env_name, command, key)
