"""report.html from a real run: the gate profile against a twin, the page read back with an HTML
parser and rendered in headless Chromium. The screenshot and the page stay in reports/ as the
artifact a person looks at (reports/screenshots/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import RunningTwin
from tests.test_report import Element, parse_html

ROOT = Path(__file__).parents[1]
ARTIFACTS = ROOT / "reports" / "screenshots"
WINDOW = (1280, 2400)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
#: The verdict banner's colours in the page's style sheet (--ok, --bad).
BANNER = {"fit": (0x1A, 0x7F, 0x37), "not fit": (0xCF, 0x22, 0x2E)}


@pytest.fixture(scope="module")
def gate_run(twin: RunningTwin) -> tuple[dict[str, Any], Path, int]:
    """The gate profile run against the twin: its summary.json, report.html and exit code."""
    finished = twin.pytest("-m", "gate", "-q", timeout=240)
    reports = twin.state_dir / "reports"
    assert (reports / "report.html").is_file(), finished.stdout[-3000:] + finished.stderr[-3000:]
    summary = json.loads((reports / "summary.json").read_text())
    return summary, reports / "report.html", finished.returncode


def test_report_of_a_gate_run_shows_its_verdict_suites_checks_and_a_plot(
    gate_run: tuple[dict[str, Any], Path, int],
) -> None:
    summary, report, returncode = gate_run
    page = parse_html(report.read_text())

    verdict = page.iter("div", id="verdict")[0]
    assert verdict.attrs["data-verdict"] == summary["verdict"]
    assert summary["verdict"] == ("fit" if returncode == 0 else "not fit")
    assert summary["facts"]["run_id"] in verdict.text
    assert summary["facts"]["cluster"] in verdict.text

    sections = {section.attrs["data-suite"]: section for section in page.iter("section")}
    checks = summary["checks"]
    assert {"irsa", "dns", "autoscaler"} <= set(sections)
    assert len(checks) >= 20
    shown = {
        element.attrs["data-nodeid"]: (suite, element)
        for suite, section in sections.items()
        for element in section.iter("div")
        if "data-nodeid" in element.attrs
    }
    for check in checks:
        suite, element = shown[check["nodeid"]]
        assert check["nodeid"].startswith(f"suites/{suite}/")
        assert element.attrs["data-outcome"] == check["outcome"]
        if check["message"]:
            assert element.iter("pre")[0].text == check["message"]
        assert len(_measurement_rows(element)) == len(check["measurements"])

    (dns_plot,) = sections["dns"].iter("figure", data_plot="dns_latency")
    assert dns_plot.iter("svg")[0].iter("path")
    nodes = {
        m["context"]["node"].split(".")[0]
        for check in checks
        for m in check["measurements"]
        if m["name"] == "dns_latency_p99"
    }
    assert len(nodes) == 3
    labels = {text.text for text in dns_plot.iter("text")}
    assert nodes <= labels, f"the plot's labels {labels} do not name every node {nodes}"


def _measurement_rows(check: Element) -> list[Element]:
    tables = check.iter("table")
    return tables[0].iter("tr")[1:] if tables else []


def test_report_renders_in_headless_chromium(gate_run: tuple[dict[str, Any], Path, int]) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    summary, report, _ = gate_run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / "report-gate.html"
    screenshot = ARTIFACTS / "report-gate.png"
    shutil.copyfile(report, page)
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="clustergate-chromium-") as profile:
        rendered = subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={screenshot}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert screenshot.is_file(), f"chromium wrote no screenshot: {rendered.stderr[-2000:]}"
    with Image.open(screenshot) as image:
        assert image.size == WINDOW
        pixels = image.convert("RGB")
        assert pixels.getpixel((WINDOW[0] // 2, 40)) == BANNER[summary["verdict"]], (
            "the verdict banner is not at the top of the page in its colour"
        )
        assert len(pixels.getcolors(maxcolors=1 << 16) or ()) > 50, "the page looks blank"
