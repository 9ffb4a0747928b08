"""The dashboard in a real browser: ``stockml dashboard`` + the API + headless Chromium (CDP).

The page is loaded at a desktop width and at a phone's (390 px); each time the test waits for
Plotly's SVG, checks that the forecast traces hold the API's numbers and were drawn inside
the viewport, and saves a screenshot under ``.stockml/test-artifacts/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stockml.local import free_port, wait_http
from utils.api_fixtures import API_KEY
from utils.browser import chromium_page, find_chromium

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".stockml" / "test-artifacts"

# what the page drew: Plotly's own data on the chart's div, and the SVG it rendered
CHART_STATE = """(() => {
  const g = document.querySelector('.js-plotly-plot');
  if (!g || !g.data || !g.querySelector('.main-svg')) return null;
  const box = g.getBoundingClientRect();
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const pad = main ? parseFloat(getComputedStyle(main).paddingLeft) + parseFloat(getComputedStyle(main).paddingRight) : 0;
  return {
    forecast: g.data.filter(t => t.meta && t.meta.role === 'forecast')
                    .map(t => ({model: t.meta.model, x: Array.from(t.x), y: Array.from(t.y)})),
    drawn_lines: Array.from(g.querySelectorAll('.scatterlayer path.js-line'))
                      .filter(p => (p.getAttribute('d') || '').length > 10).length,
    candles: g.querySelectorAll('.boxlayer path').length,
    left: box.left, right: box.right, width: box.width, height: box.height,
    main_width: main ? main.clientWidth - pad : null,
    page_width: document.documentElement.scrollWidth,
    errors: Array.from(document.querySelectorAll('[data-testid="stException"]')).length,
  };
})()"""


@pytest.fixture(scope="session")  # session: it is set up (or skips) before the servers
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium installed (apt-get install chromium chromium-driver)")
    return found


@pytest.fixture(scope="module")
def dashboard_url(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``stockml dashboard`` (the CLI command) on a free loopback port, against the API."""
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    env = {**os.environ, "STOCKML_API_KEY": API_KEY}
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "stockml.cli",
                "dashboard",
                "--api-url",
                api_url,
                "--port",
                str(port),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_stcore/health", timeout_s=90, process=process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize(
    ("name", "width", "height", "mobile"),
    [("desktop", 1280, 1000, False), ("mobile", 390, 844, True)],
)
def test_the_chart_renders_the_api_forecast(
    chromium: str,
    dashboard_url: str,
    api_url: str,
    tmp_path: Path,
    name: str,
    width: int,
    height: int,
    mobile: bool,
) -> None:
    # GIVEN the API's own forecast for MSFT (the oracle) and a headless browser at this width
    api = httpx.get(
        f"{api_url}/plot/MSFT", params={"history": 250}, headers={"X-API-Key": API_KEY}
    ).json()
    with chromium_page(chromium, tmp_path / "profile") as browser:
        browser.viewport(width, height, mobile=mobile)

        # WHEN the dashboard's forecast page is loaded and Plotly has drawn its SVG
        browser.open(f"{dashboard_url}/?symbol=MSFT")
        state = browser.wait_for(CHART_STATE, timeout_s=90)
        shot = browser.screenshot(ARTIFACTS / f"dashboard-{name}.png")

    # THEN every model's forecast trace holds the API's dates and closes
    drawn = {t["model"]: t for t in state["forecast"]}
    assert set(drawn) == set(api["predictions"])
    for model, trace in drawn.items():
        assert trace["x"] == api["dates"]
        assert trace["y"] == pytest.approx(api["predictions"][model], rel=1e-12)
    # AND it was drawn: forecast, band and baseline lines and one candle per session, on screen
    assert state["drawn_lines"] >= len(drawn)
    assert state["candles"] >= len(api["history"])
    assert state["errors"] == 0
    assert state["left"] >= 0 and state["right"] <= width
    assert state["width"] >= 0.95 * state["main_width"] and state["height"] >= 300
    # AND nothing runs off the side of a phone's screen
    assert state["page_width"] <= width
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
