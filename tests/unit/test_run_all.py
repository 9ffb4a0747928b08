"""benchmarks/run_all.py: the last JSON line of each benchmark, checked against the goals."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import run_all  # noqa: E402


def test_every_goal_reads_a_key_its_benchmark_prints() -> None:
    # GIVEN each goal's benchmark and key (and the key it compares with)
    for figure in run_all.FIGURES:
        source = (REPO / "benchmarks" / f"{figure.benchmark}.py").read_text()
        dotted = [figure.key]
        if isinstance(figure.target, str) and figure.target.startswith("$"):
            dotted.append(figure.target[1:])
        # the outermost and the innermost name of each (possibly nested) key
        keys = [part for key in dotted for part in {key.split(".")[0], key.split(".")[-1]}]
        # THEN the benchmark writes that key into its JSON (a renamed figure breaks this)
        for key in keys:
            assert re.search(rf"[\"']{re.escape(key)}[\"'](\s*:|\]\s*=)", source), (
                figure.benchmark,
                key,
            )
    assert set(run_all.COMMANDS) == {f.benchmark for f in run_all.FIGURES}


def test_figures_pass_fail_and_errors_are_told_apart() -> None:
    # GIVEN one serving run meeting some goals and missing others, a sentiment run comparing
    # against its own baselines, a benchmark that could not run and one that crashed
    results = {
        "serve": (
            {
                "predict_p99_ms": 1.2,
                "throughput_ratio": 0.4,
                "cold_start_ratio": 1.3,
                "package_type": "Zip",
                "artefact_mb": 148.5,
            },
            "",
        ),
        "sentiment": (
            {
                "tweets_test": {"accuracy_model": 0.83, "accuracy_majority": 0.66},
                "AllAgree": {"accuracy_model": 0.69, "accuracy_majority": 0.72},
            },
            "",
        ),
        "features": (None, "exit 1: ImportError: no module named ta"),
        "train": (None, "/x/shared/data is absent"),
    }
    # WHEN they are evaluated
    rows = {(r.benchmark, r.key, r.goal): r for r in run_all.evaluate(results)}
    status = {(b, k, g): r.status for (b, k, g), r in rows.items()}
    # THEN each figure is judged against its own goal
    assert status[("serve", "predict_p99_ms", "<= 5")] == "pass"
    assert status[("serve", "throughput_ratio", ">= 0.5")] == "FAIL"
    assert status[("serve", "package_type", "== Zip")] == "pass"
    assert status[("serve", "artefact_mb", "<= 250")] == "pass"
    assert status[("serve", "artefact_mb", "<= 120")] == "FAIL"
    # AND a goal against another figure of the same run reads that figure
    key, other = "tweets_test.accuracy_model", "tweets_test.accuracy_majority"
    assert status[("sentiment", key, f"> 0.66 (`{other}`)")] == "pass"
    key, other = "AllAgree.accuracy_model", "AllAgree.accuracy_majority"
    assert status[("sentiment", key, f"> 0.72 (`{other}`)")] == "FAIL"
    assert status[("sentiment", key, ">= 0.8")] == "FAIL"
    # AND a run that crashed is an error, one without its data is skipped, with the reason
    assert {r.status for r in rows.values() if r.benchmark == "features"} == {"error"}
    assert {r.status for r in rows.values() if r.benchmark == "train"} == {"skipped"}
    assert all("absent" in r.value for r in rows.values() if r.benchmark == "train")
    # AND a benchmark that was not run has no row
    assert not any(r.benchmark == "ingest" for r in rows.values())


def test_a_missing_key_is_an_error_not_a_pass() -> None:
    rows = run_all.evaluate({"features": ({"rows": 10}, "")})
    assert [r.status for r in rows] == ["error"]


def test_run_reads_the_last_line_and_reports_failures(tmp_path: Path) -> None:
    # GIVEN benchmark scripts: one printing figures then JSON, one failing, one printing no JSON
    good = tmp_path / "good.py"
    good.write_text("print('figures: 3 ms')\nprint('{\"a\": 1.5}')\n")
    bad = tmp_path / "bad.py"
    bad.write_text('import sys\nprint(\'{"error": "data is absent"}\')\nsys.exit(1)\n')
    crash = tmp_path / "crash.py"
    crash.write_text("raise SystemExit('boom')\n")
    # WHEN each is run THEN the JSON or the reason comes back
    assert run_all.run(good, []) == ({"a": 1.5}, "")
    assert run_all.run(bad, []) == (None, "data is absent")
    result, why = run_all.run(crash, [])
    assert result is None and "exit 1" in why and "boom" in why


def test_the_table_is_markdown_with_one_row_per_figure() -> None:
    rows = run_all.evaluate({"features": ({"rows_per_s": 250_000.0}, "")})
    table = run_all.render(rows, "# results")
    lines = table.strip().splitlines()
    assert lines[0] == "# results"
    assert lines[2].startswith("| benchmark |") and lines[3].startswith("|---")
    assert (
        lines[4]
        == "| `features.py` | feature rows per second | `rows_per_s` | 250,000 | >= 200,000 | pass |"
    )


def test_a_figure_the_benchmark_skipped_says_why() -> None:
    # GIVEN a serving run without the universe file: it names the figure it could not take
    results = {
        "serve": (
            {
                "predict_p99_ms": 1.0,
                "rankings_p99_ms": None,
                "skipped": {"rankings_p99_ms": "x is absent"},
            },
            "",
        )
    }
    rows = [r for r in run_all.evaluate(results) if r.key == "rankings_p99_ms"]
    # THEN both of its goals are skipped with the reason, not failed
    assert {(r.status, r.value) for r in rows} == {("skipped", "x is absent")}
    assert len(rows) == 2
