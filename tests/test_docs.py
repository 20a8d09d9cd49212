"""The documentation a clone holds stays whole: every relative link in README.md and docs/
points at a file of the repository (and at a heading of it, when it names one), and the
configuration reference names every key the config accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from clustergate.config import ClusterConfig

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: [text](target) outside code; images too. Targets with a scheme are external.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE.sub(lambda m: m.group(0).strip("`"), heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def _links(page: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def _broken(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}: ({target})"
        if not linked.is_relative_to(root.resolve()):
            broken.append(f"{where} leaves the repository")
        elif not linked.exists():
            broken.append(f"{where} names no file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{where} names no heading of {linked.relative_to(root.resolve())}")
    return broken


def test_the_pages_link_to_something() -> None:
    assert (ROOT / "docs").is_dir(), "docs/ is missing"
    assert _links(ROOT / "README.md"), "README.md links to no page"


def test_every_relative_link_points_at_a_file_of_the_repository() -> None:
    broken = [line for page in PAGES for line in _broken(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_catches_a_missing_file_a_way_out_and_a_missing_heading(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "facts.md").write_text("# Facts\n## NodeLocal DNSCache\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](facts.md#nodelocal-dnscache) [web](https://example.com/x.md) `[code](no.md)`\n"
        "[gone](nothing-here.md) [out](../../outside.md) [heading](facts.md#no-such)\n"
    )
    assert _broken(page, tmp_path) == [
        "docs/page.md: (nothing-here.md) names no file",
        "docs/page.md: (../../outside.md) leaves the repository",
        "docs/page.md: (facts.md#no-such) names no heading of docs/facts.md",
    ]
    assert _slug("`clustergate init` & more") == "clustergate-init--more"


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            keys.append(path)  # a section always present has a heading, not a row
        for inner in _models(field.annotation):
            listed = "[]" if _is_sequence(field.annotation) else ""
            if inner.__name__.endswith("Driver"):
                continue
            keys.extend(_keys(inner, f"{path}{listed}."))
    return keys


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _is_sequence(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    return origin is tuple or any(_is_sequence(arg) for arg in get_args(annotation))


def test_the_configuration_reference_names_every_key() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    keys = _keys(ClusterConfig, "")
    assert "irsa.mappings[].must_allow" in keys
    assert "cutover.steps[].weight" in keys
    missing = [key for key in keys if f"`{key}`" not in reference]
    assert not missing, f"docs/configuration.md does not describe: {missing}"
