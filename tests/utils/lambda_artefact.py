"""The prediction API's Lambda artefact: dependency closures, and the zip built as `sam build`
builds it. Shared by the packaging tests, the SAM tests and benchmarks/serve.py."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SAM = REPO / ".venv-sam" / "bin" / "sam"
ZIP_LIMIT_MB = 250


def closure(requirement: str) -> dict[str, float]:
    """The installed dependency closure of ``requirement`` (with its extras): name -> MB.

    Read from this environment's metadata; the project itself is left out.
    """
    seen: dict[str, float] = {}
    stack = [Requirement(requirement)]
    while stack:
        req = stack.pop()
        key = canonicalize_name(req.name)
        if key in seen:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue
        seen[key] = sum((f.size or 0) for f in dist.files or []) / 1e6
        extras = set(req.extras) | {""}
        for raw in dist.requires or []:
            child = Requirement(raw)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                # an extra of the project itself (stockml[data]) carries its own extras along
                stack.append(child)
    seen.pop("stockml", None)
    return seen


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short tags (!Ref, !Sub, ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template() -> dict:
    return yaml.load((REPO / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506


def api_runtime() -> str:
    """The prediction function's runtime in template.yaml, e.g. ``python3.12``."""
    return template()["Resources"]["PredictionFunction"]["Properties"]["Runtime"]


def find_python(version: str) -> Path | None:
    """A working ``python<version>`` interpreter (PATH, pyenv, /usr/bin), or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
    )
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        probe = subprocess.run(  # noqa: S603 - an interpreter path, fixed code
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return Path(candidate)
    return None


def sam_env(python: Path) -> dict[str, str]:
    """The environment `sam` runs in: offline-safe, with ``python`` first on PATH."""
    return {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "SAM_CLI_TELEMETRY": "0",
        # the interpreter functions/Makefile runs lambda_build.py with (any with pip >= 22.2)
        "PYTHON": sys.executable,
    }


def sam_build(build_dir: Path, python: Path, *resources: str) -> subprocess.CompletedProcess[str]:
    """`sam build [resources]` of the repository's template into ``build_dir``.

    SAM's build cache lives in .aws-sam/cache (git-ignored): a rebuild of unchanged
    functions copies them from it.
    """
    return subprocess.run(  # noqa: S603 - fixed argv
        [str(SAM), "build", *resources, "--build-dir", str(build_dir), "--cached",
         "--cache-dir", str(REPO / ".aws-sam" / "cache")],
        cwd=REPO,
        env=sam_env(python),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip


def make_build(build_dir: Path, python: Path) -> Path:
    """Without the SAM CLI: the API zip and the package layer, built by the same
    functions/Makefile targets `sam build` runs (in the source folders instead of SAM's
    scratch copies), with ``python`` first on PATH. Returns ``build_dir``."""
    for target, folder in (("PredictionFunction", "functions/api"), ("StockmlPackageLayer", "src")):
        subprocess.run(  # noqa: S603 - fixed argv
            ["make", "-s", "-f", str(REPO / "functions" / "Makefile"), f"build-{target}",
             f"ARTIFACTS_DIR={build_dir / target}"],
            cwd=REPO / folder,
            env=sam_env(python),
            check=True,
        )  # fmt: skip
    return build_dir


def tree_mb(path: Path) -> float:
    """Bytes of the regular files under ``path`` (what Lambda counts unzipped), in MB."""
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    )
