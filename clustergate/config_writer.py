"""The cluster config ``clustergate init`` writes: YAML (through ruamel.yaml, which keeps
comments) whose comment on each value says where it was found, with a comment at each place
discovery cannot fill saying what a person should put there."""

from __future__ import annotations

import io
import textwrap
from datetime import UTC, datetime

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from clustergate.config import parse_config
from clustergate.discover.cluster import Discovery
from clustergate.discover.cutover import Candidate
from clustergate.discover.found import Found, Section

#: Width of the comment lines written (values are never wrapped).
WIDTH = 94
#: Comments at the place of each section discovery does not write.
PROBE = (
    "probe: {image: IMAGE} is the probe image built from probe/Dockerfile and pushed where the\n"
    "nodes can pull it; without it ghcr.io/clustergate/clustergate-probe:0.1.0 is used."
)
UPGRADE = (
    'upgrade: {nodegroup: NAME, version: "1.xx"} says which node group the nightly upgrade\n'
    "check rolls, and to what; without it the first node group's release is applied again."
)
CUTOVER = (
    "cutover: not written: nobody can discover the endpoint, the steps or the SLOs, and\n"
    "without this section the cutover checks skip. To check a cutover, add (every key is in\n"
    "docs/configuration.md):\n"
    "  cutover:\n"
    "    endpoint: https://...\n"
    "    driver: <one of the candidates below, with its old and new>\n"
    "    steps: [{weight: 10}, {weight: 25}, {weight: 50}, {weight: 100}]\n"
    "    slo: {error_rate_max: 0.01, p95_ms: 300, p99_ms: 800}"
)


def _mapping(section: Section) -> CommentedMap:
    mapping = CommentedMap()
    for key, found in section.values.items():
        _put(mapping, key, found)
    _before_first(mapping, section.notes)
    return mapping


def _put(mapping: CommentedMap, key: str, found: Found) -> None:
    mapping[key] = found.value
    mapping.yaml_add_eol_comment(found.source, key, column=2)


def _item(values: dict[str, Found]) -> CommentedMap:
    """One list item; a source already given on the line above is not repeated."""
    item = CommentedMap()
    said = None
    for key, found in values.items():
        item[key] = found.value
        if found.source != said:
            item.yaml_add_eol_comment(found.source, key, column=2)
        said = found.source
    return item


def _wrapped(notes: list[str]) -> str:
    return "\n".join(line for note in notes for line in textwrap.wrap(note, WIDTH))


def _before_first(mapping: CommentedMap, notes: list[str]) -> None:
    if notes and mapping:
        first = next(iter(mapping))
        mapping.yaml_set_comment_before_after_key(first, before=_wrapped(notes), indent=2)


def _items(section: Section) -> CommentedSeq:
    return CommentedSeq(_item(values) for values in section.items)


def _candidate(candidate: Candidate) -> str:
    weights = ", ".join(f"{ref}={weight}" for ref, weight in candidate.weights.items())
    driver = yaml.safe_dump(candidate.driver, sort_keys=False, width=WIDTH).strip()
    indented = "\n".join(f"      {line}" for line in driver.splitlines())
    heading = "driver (old: the one carrying traffic now; swap them if not)"
    return f"  {candidate.summary}: {weights}\n    {heading}:\n{indented}"


def _cutover(discovery: Discovery) -> str:
    lines = [CUTOVER, ""]
    if discovery.candidates:
        lines.append("Candidates seen (weights now):")
        lines.extend(_candidate(candidate) for candidate in discovery.candidates)
    else:
        lines.append("No ALB listener forwards by weight and no Route 53 record set is weighted.")
    lines.extend(discovery.cutover_notes)
    return "\n".join(lines)


def document(discovery: Discovery, kubeconfig: str, context: str) -> CommentedMap:
    sections = discovery.sections
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    config = CommentedMap()
    config.yaml_set_start_comment(
        f"Written by `clustergate init` at {when} from kubeconfig {kubeconfig}\n"
        f"(context {context}) and the AWS credential chain. Each value's comment says where it\n"
        "was found; `clustergate init --check --config=THIS_FILE` lists what has drifted since.\n"
        "Every key is described in docs/configuration.md."
    )
    config["cluster"] = _mapping(sections["cluster"])
    irsa = CommentedMap(mappings=_items(sections["irsa"]))
    if not sections["irsa"].items:
        irsa.yaml_add_eol_comment(
            "no ServiceAccount carries eks.amazonaws.com/role-arn", "mappings", column=2
        )
    _before_first(irsa, sections["irsa"].notes)
    config["irsa"] = irsa
    config.yaml_set_comment_before_after_key("irsa", before="\n" + PROBE + "\n")
    config["dns"] = _mapping(sections["dns"])
    # An empty section has no first key to carry its notes: they go above it.
    empty_dns = _wrapped(sections["dns"].notes) if not config["dns"] else ""
    config.yaml_set_comment_before_after_key("dns", before="\n" + empty_dns)
    config["node_groups"] = _items(sections["node_groups"])
    if not sections["node_groups"].items:
        config.yaml_add_eol_comment("eks:ListNodegroups lists none", "node_groups", column=2)
    config.yaml_set_comment_before_after_key("node_groups", before="\n")
    config["autoscaler"] = _mapping(sections["autoscaler"])
    config.yaml_set_comment_before_after_key("autoscaler", before="\n")
    return config


def render(discovery: Discovery, kubeconfig: str, context: str) -> str:
    """The config's text; it is checked against clustergate/config.py before it is returned.

    The closing comments (upgrade, cutover and its candidates) follow the last section as
    plain comment lines: ruamel.yaml drops a comment after a nested mapping's last value.
    """
    writer = YAML()
    writer.width = 4096
    out = io.StringIO()
    writer.dump(document(discovery, kubeconfig, context), out)
    closing = f"{UPGRADE}\n\n{_cutover(discovery)}"
    text = (
        out.getvalue()
        + "\n"
        + "".join(f"# {line}".rstrip() + "\n" for line in closing.splitlines())
    )
    parse_config(yaml.safe_load(text), "the config clustergate init wrote")
    return text
