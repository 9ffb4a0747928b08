"""Run every benchmark and write one markdown table: each figure, its goal, pass or fail.

    python benchmarks/run_all.py [--only serve,features] [--out benchmarks/RESULTS.md]

Each benchmark prints its figures and, last, one JSON object; this script runs them one after
the other (as README's table names them), reads that last line and checks each figure of
:data:`FIGURES` against its goal. A benchmark that fails or cannot run (e.g. the sentiment
benchmark without ``../shared/data``) gets one row saying why. The table goes to ``--out``
and to stdout; the last line printed is one JSON object (the counts).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# each benchmark with the arguments its README goal is stated for
COMMANDS: dict[str, list[str]] = {
    "ingest": ["--symbols", "500", "--years", "20"],
    "features": [],
    "sentiment": [],
    "train": [],
    "serve": [],
    "load": [],
}

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Figure:
    """One figure of a benchmark's JSON (``key``, dotted for nested values) and its goal.

    ``target`` is a number, a string, or ``"$other_key"``: a figure of the same JSON (the
    sentiment scorer must beat the baselines it is printed beside).
    """

    benchmark: str
    key: str
    op: str
    target: float | str
    what: str


FIGURES = [
    Figure("ingest", "incremental_to_backfill_ratio", "<=", 0.05, "1-new-day run / backfill"),
    Figure("ingest", "amortised_to_backfill_ratio", "<=", 0.05, "with compaction days"),
    Figure("features", "rows_per_s", ">=", 200_000, "feature rows per second"),
    Figure("sentiment", "tweets_test.accuracy_model", ">=", 0.8, "held-out finance tweets"),
    Figure(
        "sentiment",
        "tweets_test.accuracy_model",
        ">",
        "$tweets_test.accuracy_majority",
        "tweets vs always-neutral",
    ),
    Figure("sentiment", "AllAgree.accuracy_model", ">=", 0.8, "PhraseBank (never trained on)"),
    Figure(
        "sentiment",
        "AllAgree.accuracy_model",
        ">",
        "$AllAgree.accuracy_majority",
        "PhraseBank vs always-neutral",
    ),
    Figure("sentiment", "speed.headlines_per_s", ">=", 10_000, "headlines/s, one core"),
    Figure("train", "onnx_ensemble_single_row_speedup", ">=", 4, "ONNX Runtime vs native"),
    Figure("serve", "predict_p99_ms", "<=", 5, "/predict p99 through the handler"),
    Figure(
        "serve",
        "predict_log_p99_ratio",
        "<=",
        1.2,
        "/predict p99 with the prediction log vs without",
    ),
    Figure("serve", "rankings_p99_ms", "<=", 50, "/rankings p99, 398 symbols, cache miss"),
    Figure("serve", "rankings_p99_ms", "<=", 20, "/rankings p99 (moonshot)"),
    Figure("serve", "throughput_ratio", ">=", 0.5, "/predict vs trivial req/s"),
    Figure("serve", "cold_start_ratio", "<=", 2, "cold start vs bare imports"),
    Figure("serve", "zip_cold_start_ratio", "<=", 2, "the zip's cold start (bare python -S)"),
    Figure("serve", "package_type", "==", "Zip", "the API's Lambda package"),
    Figure("serve", "artefact_mb", "<=", 250, "API zip, unzipped MB"),
    Figure("serve", "artefact_mb", "<=", 120, "API zip, unzipped MB (moonshot)"),
    Figure("load", "errors", "==", 0, "failed requests, 60 s of uvicorn workers under load"),
]


@dataclass(frozen=True)
class Row:
    benchmark: str
    what: str
    key: str
    value: str
    goal: str
    status: str  # pass, FAIL, error, skipped


def run(
    script: Path, args: list[str], timeout_s: float = 3600, log: Path | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run one benchmark; its last stdout line as JSON, or None and the reason.

    ``log``: where to keep its whole output (stdout, then stderr).
    """
    try:
        done = subprocess.run(  # noqa: S603 - a benchmark of this folder, fixed arguments
            [sys.executable, str(script), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"exit {done.returncode}: {tail}"
    if done.returncode != 0 or "error" in result:
        return None, str(result.get("error") or f"exit {done.returncode}")
    return result, ""


def _lookup(result: dict[str, Any], key: str) -> Any:
    value: Any = result
    for part in key.split("."):
        value = value[part]
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def evaluate(results: dict[str, tuple[dict[str, Any] | None, str]]) -> list[Row]:
    """The table's rows: every figure of every benchmark in ``results``, checked."""
    rows = []
    for figure in FIGURES:
        if figure.benchmark not in results:
            continue
        result, why = results[figure.benchmark]
        target_text = _fmt(figure.target)
        goal = f"{figure.op} {target_text}"
        if result is None:
            status = "skipped" if "absent" in why else "error"
            rows.append(Row(figure.benchmark, figure.what, figure.key, why, goal, status))
            continue
        skipped = result.get("skipped") or {}
        if figure.key in skipped:  # a figure the benchmark could not take here, and why
            rows.append(
                Row(figure.benchmark, figure.what, figure.key, skipped[figure.key], goal, "skipped")
            )
            continue
        try:
            value = _lookup(result, figure.key)
            target: Any = figure.target
            if isinstance(figure.target, str) and figure.target.startswith("$"):
                other = figure.target[1:]
                target = _lookup(result, other)
                goal = f"{figure.op} {_fmt(target)} (`{other}`)"
            ok = value is not None and OPS[figure.op](value, target)
        except (KeyError, TypeError) as exc:
            rows.append(
                Row(figure.benchmark, figure.what, figure.key, f"missing: {exc}", goal, "error")
            )
            continue
        rows.append(
            Row(
                figure.benchmark,
                figure.what,
                figure.key,
                _fmt(value),
                goal,
                "pass" if ok else "FAIL",
            )
        )
    return rows


def render(rows: list[Row], header: str) -> str:
    """The markdown table, under ``header``."""
    lines = [
        header,
        "",
        "| benchmark | figure | key | value | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r.benchmark}.py` | {r.what} | `{r.key}` | {r.value} | {r.goal} | {r.status} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated benchmarks (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--logs", type=Path, help="keep each benchmark's output in DIR/<name>.log")
    args = parser.parse_args()
    wanted = [b.strip() for b in args.only.split(",") if b.strip()] or list(COMMANDS)
    unknown = set(wanted) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown benchmarks: {sorted(unknown)}")

    results = {}
    for name in wanted:
        started = time.perf_counter()
        print(f"== {name}.py {' '.join(COMMANDS[name])}", flush=True)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
        log = args.logs / f"{name}.log" if args.logs else None
        results[name] = run(HERE / f"{name}.py", COMMANDS[name], log=log)
        print(f"   {time.perf_counter() - started:.0f} s {results[name][1]}", flush=True)
    rows = evaluate(results)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"# Benchmark results\n\n`python benchmarks/run_all.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC, {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end."
    )
    table = render(rows, header)
    args.out.write_text(table)
    print(table)
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "FAIL", "error", "skipped")}
    print(json.dumps({"out": str(args.out), **counts}))


if __name__ == "__main__":
    main()
