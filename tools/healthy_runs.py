"""Run the whole suite against a fresh healthy twin K times; report false failures per check.

    python tools/healthy_runs.py -k 20 [--profile nightly] [--nodes 3] [-n WORKERS]

A healthy twin must pass every check every time: each failure here is a false alarm (a flake)
to fix at its root. Prints one line per check that ever failed (how often, and its messages) and
writes reports/healthy-runs.json. Exit code 1 when any check failed in any run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ROOT
from tests.fault_matrix import SuiteRun, run_on_fresh_twin

RUN_TIMEOUT_S = 1800
PASSING = ("passed", "skipped")


def false_failures(runs: list[SuiteRun]) -> dict[str, list[str]]:
    """check → the messages of the runs in which it did not pass (or '' per run without one)."""
    found: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for check in run.checks:
            if check["outcome"] not in PASSING:
                found[check["nodeid"]].append(f"{check['outcome']}: {check['message'][:300]}")
        if run.problem:
            found["(the run itself)"].append(run.problem)
    return dict(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=20)
    parser.add_argument("--profile", default="nightly")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("-n", "--workers", type=int, default=0, help="xdist workers per run")
    parser.add_argument("--reports-dir", default=str(ROOT / "reports"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="healthy-runs-"))
    pytest_args = ["-m", args.profile] + (["-n", str(args.workers)] if args.workers else [])
    runs = []
    for index in range(1, args.runs + 1):
        run = run_on_fresh_twin(
            work / f"run-{index}", ["--nodes", str(args.nodes)], pytest_args, RUN_TIMEOUT_S
        )
        runs.append(run)
        outcomes = Counter(check["outcome"] for check in run.checks)
        print(
            f"run {index}/{args.runs}: {dict(outcomes)} in {run.seconds}s {run.problem}", flush=True
        )
    found = false_failures(runs)
    checks = sorted({check["nodeid"] for run in runs for check in run.checks})
    print(f"\n{len(runs)} runs of -m {args.profile}, {len(checks)} checks")
    for nodeid in checks:
        failed = len(found.get(nodeid, []))
        print(f"{failed:3d}/{len(runs)} false failures  {nodeid}")
    for nodeid, messages in sorted(found.items()):
        print(f"\n{nodeid}:\n  " + "\n  ".join(messages))
    report = Path(args.reports_dir) / "healthy-runs.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {
                "profile": args.profile,
                "runs": len(runs),
                "seconds": [run.seconds for run in runs],
                "checks": checks,
                "false_failures": found,
            },
            indent=2,
        )
    )
    print(f"\n(written to {report}; twins' state in {work})")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
