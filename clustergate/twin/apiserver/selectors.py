"""Label and field selectors, in the string form of list/watch requests and the object form of
workload and budget specs (k8s.io/apimachinery/pkg/labels and pkg/fields)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clustergate.twin.apiserver.errors import bad_request

_TERM = re.compile(
    r"""^\s*(?:
        (?P<not>!)\s*(?P<nkey>[^\s!=,()]+)\s*$
      | (?P<key>[^\s!=,()]+)\s*(?:
            (?P<op>==|!=|=)\s*(?P<value>[^\s,()]*)
          | \s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)
        )?\s*$
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text:
            return cls()
        requirements = []
        for term in _split_terms(text):
            match = _TERM.match(term)
            if not match:
                if "(" in term and ")" not in term:
                    raise bad_request("unable to parse requirement: found '', expected: ',' or ')'")
                raise bad_request(f"unable to parse requirement: {term.strip()!r}")
            if match["nkey"]:
                requirements.append(Requirement(match["nkey"], "!exists"))
            elif match["setop"]:
                values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
                requirements.append(Requirement(match["key"], match["setop"], values))
            elif match["op"]:
                operator = "!=" if match["op"] == "!=" else "="
                requirements.append(
                    Requirement(match["key"], operator, frozenset([match["value"]]))
                )
            else:
                requirements.append(Requirement(match["key"], "exists"))
        return cls(tuple(requirements))

    @classmethod
    def from_object(cls, selector: dict[str, Any] | None) -> LabelSelector | None:
        """A metav1.LabelSelector; ``None`` (a null selector) selects nothing."""
        if selector is None:
            return None
        requirements = [
            Requirement(key, "=", frozenset([value]))
            for key, value in (selector.get("matchLabels") or {}).items()
        ]
        operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
        for expression in selector.get("matchExpressions") or []:
            requirements.append(
                Requirement(
                    expression["key"],
                    operators[expression["operator"]],
                    frozenset(expression.get("values") or ()),
                )
            )
        return cls(tuple(requirements))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def equality(self, key: str) -> str | None:
        """The value this selector pins ``key`` to, if it does (used to pick an index)."""
        for requirement in self.requirements:
            if requirement.key == key and requirement.operator == "=":
                return next(iter(requirement.values))
        return None


def selector_string(selector: dict[str, Any]) -> str:
    """metav1.LabelSelector as the string the scale subresource reports."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        values = ",".join(sorted(expression.get("values") or ()))
        operator = expression["operator"]
        if operator == "In":
            parts.append(f"{expression['key']} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{expression['key']} notin ({values})")
        elif operator == "Exists":
            parts.append(expression["key"])
        else:
            parts.append(f"!{expression['key']}")
    return ",".join(parts)


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field as field selectors compare it: strings as they are, booleans lower-case."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        # Only events' "source" (an EventSource) is a selectable object; it matches its component.
        return str(value.get("component", ""))
    return str(value)


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    @classmethod
    def parse(cls, text: str | None, allowed: Callable[[str], bool]) -> FieldSelector:
        if not text:
            return cls()
        terms = []
        for term in text.split(","):
            if not term.strip():
                continue
            match = re.match(r"^\s*([^\s!=]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
            if not match:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
            name, operator, value = match.groups()
            if not allowed(name):
                raise bad_request(f"field label not supported: {name}")
            terms.append((name, operator != "!=", value))
        return cls(tuple(terms))

    def matches(self, obj: dict[str, Any], translate: Callable[[str], str] = str) -> bool:
        return all(
            (field_value(obj, translate(name)) == value) == equal
            for name, equal, value in self.terms
        )

    def equality(self, name: str) -> str | None:
        for field, equal, value in self.terms:
            if field == name and equal:
                return value
        return None
