"""``python -m clustergate.twin up|down|run``: the local twin of an EKS cluster.

``up`` starts the twin as a background process and returns once it is ready, printing where
its kubeconfig, AWS settings and cluster config are; ``down`` stops it; ``run`` runs it in the
foreground (what ``up`` starts); ``kubeconfig --as-role ROLE`` writes a kubeconfig for the
ServiceAccount bound to that ClusterRole (deploy/rbac.yaml applied with kubectl). Everything
it writes goes to ``--state-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clustergate.twin.faults import FAULTS, UnknownFaultError
from clustergate.twin.settings import AUTOSCALERS, TwinSettings, default_node_groups
from clustergate.twin.traffic.side import DRIVERS

READY_FILE = "ready.json"
PID_FILE = "twin.pid"
LOG_FILE = "twin.log"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clustergate.twin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "run"):
        command = commands.add_parser(name)
        command.add_argument("--state-dir", required=True)
        command.add_argument("--nodes", type=int, default=3)
        command.add_argument(
            "--fault", action="append", default=[], metavar="NAME", choices=sorted(FAULTS)
        )
        command.add_argument("--api-fault-rate", type=float, default=0.0)
        command.add_argument(
            "--cutover-driver",
            choices=DRIVERS,
            default="elbv2",
            help="the weights the cluster config's cutover turns: the ALB listener (elbv2) or "
            "the weighted Route 53 records, resolved over DNS (route53)",
        )
        command.add_argument("--timeout", type=float, default=120.0, help="seconds to ready")
        command.add_argument(
            "--autoscaler",
            choices=AUTOSCALERS,
            default="cluster-autoscaler",
            help="what scales the nodes: cluster-autoscaler on the node groups' ASGs, or "
            "Karpenter (NodePool/EC2NodeClass CRDs, a default pool, the controller)",
        )
    kubeconfig = commands.add_parser(
        "kubeconfig", help="write a kubeconfig for the ServiceAccount bound to a ClusterRole"
    )
    kubeconfig.add_argument("--state-dir", required=True)
    kubeconfig.add_argument("--as-role", required=True, metavar="CLUSTERROLE")
    kubeconfig.add_argument("--output", required=True)
    kubeconfig.add_argument("--duration", type=int, default=3600, help="token lifetime, seconds")
    down = commands.add_parser("down")
    down.add_argument("--state-dir", required=True)
    commands.add_parser("faults", help="list the named faults")
    return parser


def _settings(args: argparse.Namespace) -> TwinSettings:
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if args.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    return TwinSettings(
        state_dir=str(state),
        node_groups=default_node_groups(args.nodes),
        faults=frozenset(args.fault),
        api_fault_rate=args.api_fault_rate,
        start_timeout_s=args.timeout,
        cutover_driver=args.cutover_driver,
        autoscaler=args.autoscaler,
    )


def _up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    state = Path(settings.state_dir)
    (state / READY_FILE).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "clustergate.twin",
        "run",
        "--state-dir",
        str(state),
        "--nodes",
        str(args.nodes),
        "--api-fault-rate",
        str(args.api_fault_rate),
        "--timeout",
        str(args.timeout),
        "--cutover-driver",
        args.cutover_driver,
        "--autoscaler",
        args.autoscaler,
    ]
    for fault in args.fault:
        command += ["--fault", fault]
    with open(state / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (state / PID_FILE).write_text(str(process.pid))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if (state / READY_FILE).exists():
            print((state / READY_FILE).read_text())
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.1)
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
        print(f"twin not ready after {args.timeout:.0f}s", file=sys.stderr)
    else:
        print(f"twin exited with code {process.returncode} before it was ready", file=sys.stderr)
    tail = (state / LOG_FILE).read_text(errors="replace").splitlines()[-25:]
    print("last lines of " + str(state / LOG_FILE) + ":\n" + "\n".join(tail), file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    try:
        pid = int((state / PID_FILE).read_text())
    except (OSError, ValueError):
        print(f"no twin recorded in {state}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return 0


def _run(args: argparse.Namespace) -> int:
    from clustergate.twin.cluster import Twin

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = _settings(args)
    asyncio.run(Twin(settings).serve(Path(settings.state_dir) / READY_FILE))
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from clustergate.twin.role_tokens import NoBindingError, write_role_kubeconfig

    try:
        who = write_role_kubeconfig(
            Path(args.state_dir), args.as_role, Path(args.output), args.duration
        )
    except NoBindingError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{args.output}: context {args.as_role}, authenticated as {who}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "faults":
            for fault in FAULTS.values():
                print(f"{fault.name:28} {fault.component:11} {fault.summary}")
            return 0
        if args.command == "down":
            return _down(args)
        if args.command == "kubeconfig":
            return _kubeconfig(args)
        return _up(args) if args.command == "up" else _run(args)
    except UnknownFaultError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
