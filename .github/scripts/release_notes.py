"""Print the CHANGELOG.md section of a version tag: the release workflow's release notes.

    python .github/scripts/release_notes.py v0.2.0 [--changelog CHANGELOG.md]

``v0.2.0`` selects the section headed ``## [0.2.0]`` (up to the next ``## `` heading). Exits
with status 1 and a message when the changelog has no such section or it is empty, so a tag
without notes fails the release instead of publishing nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parents[2] / "CHANGELOG.md"


def section(changelog: str, tag: str) -> str:
    """The body of ``## [<version>]`` for ``tag`` (``v1.2.3`` or ``1.2.3``), stripped.

    Raises:
        LookupError: no section for that version, or an empty one.
    """
    version = tag.removeprefix("v")
    heading = re.compile(rf"^## \[{re.escape(version)}\](?:\s|$)")
    lines = changelog.splitlines()
    for start, line in enumerate(lines):
        if heading.match(line):
            end = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                len(lines),
            )
            body = "\n".join(lines[start + 1 : end]).strip()
            if not body:
                raise LookupError(f"CHANGELOG.md: the section of {version} is empty")
            return body
    raise LookupError(f"CHANGELOG.md has no section '## [{version}]'")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", help="the version tag, e.g. v0.2.0")
    parser.add_argument("--changelog", type=Path, default=CHANGELOG)
    args = parser.parse_args()
    try:
        print(section(args.changelog.read_text(), args.tag))
    except LookupError as exc:
        print(f"release_notes: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
