"""Profiles, and which suites a run selects before any test is collected.

A check declares the lowest profile it belongs to; profiles include the ones below them
(nightly ⊃ signoff ⊃ gate), so ``-m signoff`` also runs every gate check. Disruptive checks run
only when the selected profile goes beyond gate or ``--allow-disruptive`` is given.
The preflight runs before collection (on the xdist controller, which collects nothing), so the
suites a run selects are worked out here from the paths and the ``-m`` expression.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from _pytest.mark.expression import Expression

from clustergate.preflight import SUITES

PROFILES = ("gate", "signoff", "nightly")
#: Profile → the profiles that include it.
INCLUDED_IN = {"gate": ("signoff", "nightly"), "signoff": ("nightly",), "nightly": ()}


def _matches(markexpr: str, names: set[str]) -> bool:
    if not markexpr:
        return True
    return Expression.compile(markexpr).evaluate(lambda name, **_: name in names)


def disruption_allowed(markexpr: str, allow_flag: bool) -> bool:
    """True when the flag is given or the expression selects a profile beyond gate."""
    if allow_flag:
        return True
    if not markexpr:
        return False
    beyond_gate = [{"signoff", "nightly", "disruptive", suite} for suite in SUITES]
    return any(_matches(markexpr, names) for names in beyond_gate)


def selected_suites(args: Iterable[str], rootdir: Path, markexpr: str) -> list[str]:
    suites_dir = (rootdir / "suites").resolve()
    by_path = set()
    for arg in args or [str(rootdir)]:
        path = (rootdir / arg.split("::", 1)[0]).resolve()
        for suite in SUITES:
            folder = suites_dir / suite
            if path == folder or folder in path.parents or path in folder.parents:
                by_path.add(suite)
    chosen = []
    for suite in SUITES:
        if suite not in by_path:
            continue
        combinations = [{suite, profile, *INCLUDED_IN[profile]} for profile in PROFILES]
        combinations += [names | {"disruptive"} for names in combinations]
        if any(_matches(markexpr, names) for names in combinations):
            chosen.append(suite)
    return chosen
