"""CloudFormation templates as the tests read them: YAML with the short tags (``!Ref``, ``!Sub``,
``!If`` ...) kept as ``{tag: value}``, and the S3 access a function's statements grant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader keeping CloudFormation short tags as ``{tag: value}``."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _tag)


def read_template(path: Path) -> dict[str, Any]:
    """The template at ``path``, short tags as ``{tag: value}``."""
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def s3_access(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """``{action: {resource, ...}}`` granted by ``statements`` (a ``!Sub`` resource as its
    text; statements under an ``!If`` are left out)."""
    by_action: dict[str, set[str]] = {}
    for statement in statements:
        if "If" in statement:
            continue
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            by_action.setdefault(action, set()).update(
                r["Sub"] if isinstance(r, dict) and "Sub" in r else str(r)
                for r in (resources if isinstance(resources, list) else [resources])
            )
    return by_action
