"""Run one load phase by hand and print what the suite would see.

    python load/phase.py --host https://shop.example.com --users 20 --seconds 60 \\
        [--workers 2] [--remote-workers 3 --master-bind-host 0.0.0.0 --master-port 5557]

A command-line front for :func:`clustergate.load_phase.run_phase` (the runner the cutover suite
calls): Locust runs in subprocesses, the request log goes to ``--log-dir``, and the summary
gives each backend's share with its 99% interval and its latency percentiles.
"""

from __future__ import annotations

import argparse
import tempfile

from clustergate.load_phase import run_phase
from clustergate.stats import latency_percentiles, proportion_interval


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one Locust load phase and summarise it.")
    parser.add_argument("--host", required=True, help="base URL of the cutover endpoint")
    parser.add_argument("--path", default="/")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--user-rps", type=float, default=0, help="per user; 0: no wait")
    parser.add_argument("--backend-header", default="X-Served-By")
    parser.add_argument("--backend-field", default="")
    parser.add_argument(
        "--resolver",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="name server the users resolve the host through (repeatable; default: the system's)",
    )
    parser.add_argument("--workers", type=int, default=0, help="local worker processes")
    parser.add_argument("--remote-workers", type=int, default=0, help="workers on other hosts")
    parser.add_argument("--master-bind-host", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=0)
    parser.add_argument("--log-dir", default="", help="request log directory (default: new temp)")
    args = parser.parse_args()

    result = run_phase(
        args.host,
        args.users,
        args.spawn_rate,
        args.seconds,
        args.log_dir or tempfile.mkdtemp(prefix="clustergate-phase-"),
        workers=args.workers,
        path=args.path,
        backend_header=args.backend_header,
        backend_field=args.backend_field,
        user_rps=args.user_rps,
        resolver=args.resolver,
        remote_workers=args.remote_workers,
        master_bind_host=args.master_bind_host,
        master_port=args.master_port,
    )
    print(result.describe())
    total = len(result.records)
    for backend, records in sorted(result.by_backend.items(), key=lambda kv: str(kv[0])):
        share = proportion_interval(len(records), total)
        errors = sum(record.failed for record in records)
        latency = latency_percentiles([record.latency_ms for record in records])
        print(
            f"  {backend or 'unnamed'}: share {share.describe()}; {errors:,} failed; "
            f"{latency.describe()}"
        )


if __name__ == "__main__":
    main()
