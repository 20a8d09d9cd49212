"""A discovered value and where it was read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Found:
    value: Any
    #: Where the value was read, e.g. "eks:DescribeCluster .version".
    source: str


@dataclass
class Section:
    """One top-level key of the config: its discovered keys, list items and remarks."""

    values: dict[str, Found] = field(default_factory=dict)
    items: list[dict[str, Found]] = field(default_factory=list)
    #: Comment lines written at the section's place: facts that are no config key, and what
    #: a person must add.
    notes: list[str] = field(default_factory=list)
