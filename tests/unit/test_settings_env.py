"""Settings.env: a typed environment, and real secrets outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stockml.errors import ConfigError
from stockml.settings import MIN_SECRET_CHARS, Settings, StoreSettings
from utils.api_fixtures import API_KEY
from utils.lambda_artefact import template

STRONG = "k3Y-" + "x" * MIN_SECRET_CHARS


def test_every_stage_of_the_template_is_a_known_environment() -> None:
    # GIVEN the stages the SAM template deploys (it sets STOCKML_ENV to the stage name)
    stages = template()["Parameters"]["Stage"]["AllowedValues"]
    # THEN each names an environment, never development by accident for prod
    envs = {stage: Settings(env=stage).env for stage in stages}
    assert envs == {"dev": "development", "prod": "production"}


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError, match="development"):
        Settings(env="qa")


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize(
    "variable", ["STOCKML_API_KEY", "POLYGON_API_KEY", "ALPHA_VANTAGE_API_KEY"]
)
@pytest.mark.parametrize("value", [API_KEY, "changethis", "short-key", "  testing "])
def test_outside_development_a_published_or_short_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: str, variable: str, value: str
) -> None:
    # GIVEN a secret that the repository publishes (tests, examples) or that is guessable
    monkeypatch.setenv(variable, value)
    # WHEN settings are built outside development THEN they refuse it, naming the variable
    with pytest.raises(ConfigError, match=variable):
        Settings(env=env)


def test_development_accepts_the_test_key_and_production_a_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the key the tests and events use
    monkeypatch.setenv("STOCKML_API_KEY", API_KEY)
    # THEN development accepts it
    assert Settings().api_key.get_secret_value() == API_KEY  # type: ignore[union-attr]
    # AND production accepts a strong one, or none at all (the feature is then off)
    monkeypatch.setenv("STOCKML_API_KEY", STRONG)
    assert Settings(env="production").api_key.get_secret_value() == STRONG  # type: ignore[union-attr]
    monkeypatch.delenv("STOCKML_API_KEY")
    assert Settings(env="production").api_key is None
    # AND an empty one, as .env.example leaves them, counts as unset
    monkeypatch.setenv("POLYGON_API_KEY", "")
    assert not Settings(env="production").polygon_api_key


def test_an_empty_store_endpoint_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the template's declared-but-empty endpoint variable
    monkeypatch.setenv("STOCKML_STORE__ENDPOINT_URL", "")
    # THEN the store talks to AWS (no custom endpoint), while a real URL is kept
    assert Settings().store.endpoint_url is None
    assert StoreSettings(endpoint_url="http://127.0.0.1:5055").endpoint_url == (
        "http://127.0.0.1:5055"
    )
