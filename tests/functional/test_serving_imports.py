"""The serving path imports nothing outside stockml's core + `serving` extra (what the API zip
installs) and what the Lambda runtime itself provides. Checked in this environment, where
everything else is installed too, so a stray import would succeed here and fail on Lambda."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from stockml.settings import StoreSettings
from utils.api_fixtures import API_KEY, ENDPOINTS
from utils.lambda_artefact import closure
from utils.lambda_context import context_source

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# the Lambda Python runtime ships the AWS SDK (Powertools imports botocore's top package)
LAMBDA_RUNTIME = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
}
# imported only because they are installed here; the zip has neither and serves without them
# (tests/integration/test_sam.py runs it in a bare interpreter)
OPTIONAL = {
    "cython": "pydantic.v1 checks whether it runs compiled",
    "python-multipart": "Starlette's form parser, used by no route of ours",
}


def test_serving_every_endpoint_imports_only_core_serving_and_the_runtime(
    serving_store: StoreSettings,
) -> None:
    # GIVEN a fresh interpreter that imports the handler and serves every endpoint once
    code = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        before = set(sys.modules)  # the interpreter's start-up (site, .pth hooks)
        spec = importlib.util.spec_from_file_location("app", "functions/api/app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)

        {context_source("stockml-api", "imports")}

        statuses = {{
            name: app.handler(json.load(open(f"events/api_{{name}}_v2.json")), context)["statusCode"]
            for name in {ENDPOINTS!r}
        }}
        tops = sorted({{m.split(".")[0] for m in set(sys.modules) - before}})
        print(json.dumps({{"statuses": statuses, "modules": tops}}))
        """
    )
    env = {
        **os.environ,
        "STOCKML_STORE__BUCKET": serving_store.bucket,
        "STOCKML_STORE__ENDPOINT_URL": str(serving_store.endpoint_url),
        "STOCKML_API_KEY": API_KEY,
        "STOCKML_API__RATE_LIMIT_PER_MINUTE": "0",
    }
    out = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["statuses"] == dict.fromkeys(ENDPOINTS, 200)

    # WHEN each imported top-level module is traced to the distributions that install it
    by_module = packages_distributions()
    allowed = set(closure("stockml[serving]")) | LAMBDA_RUNTIME | set(OPTIONAL) | {"stockml"}
    foreign = {
        module: sorted(canonicalize_name(d) for d in by_module[module])
        for module in result["modules"]
        if module in by_module
        and not any(canonicalize_name(d) in allowed for d in by_module[module])
    }
    # THEN every one comes from core + serving or the runtime (the standard library has none)
    assert foreign == {}
    # AND the closure really is the lean one (not the whole environment)
    assert "pandas" not in allowed and "onnxruntime" in allowed
