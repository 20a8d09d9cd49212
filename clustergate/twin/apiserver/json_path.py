"""The JSONPath subset CRDs write: ``.spec.replicas`` for scale subresources and printer
columns, with ``[0]`` indexes and ``[?(@.type=="Ready")]`` filters in columns (as
Karpenter's CRDs print their conditions)."""

from __future__ import annotations

import re
from typing import Any

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([^=!]+)==[\"']([^\"']*)[\"']\)\]")


def steps(path: str) -> list[tuple[str, ...]]:
    """("field", name), ("index", n) or ("filter", key, value) for each step of ``path``."""
    out: list[tuple[str, ...]] = []
    position = 0
    text = path.strip()
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {text[position:]!r}")
        field, index, key, value = match.groups()
        if field is not None:
            out.append(("field", field))
        elif index is not None:
            out.append(("index", index))
        else:
            out.append(("filter", key, value))
        position = match.end()
    return out


def value_at(obj: Any, path: str) -> Any:
    """What ``path`` selects in ``obj`` (None where nothing matches)."""
    value = obj
    for step in steps(path):
        if step[0] == "field":
            value = value.get(step[1]) if isinstance(value, dict) else None
        elif step[0] == "index":
            index = int(step[1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            items = value if isinstance(value, list) else []
            value = next(
                (i for i in items if isinstance(i, dict) and str(i.get(step[1])) == step[2]), None
            )
        if value is None:
            return None
    return value


def set_at(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set the field ``path`` (fields only) names, making the objects on the way."""
    names = [step[1] for step in steps(path)]
    node = obj
    for name in names[:-1]:
        node = node.setdefault(name, {})
    node[names[-1]] = value
