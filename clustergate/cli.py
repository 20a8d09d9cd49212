"""The ``clustergate`` command: ``clustergate init`` writes a cluster config from what a live
cluster and its AWS account say; ``clustergate init --check`` lists what drifted since.

Exit status: 0 done (or no drift), 1 drift, 4 bad input or a cluster or AWS account that cannot
be read (one message, no traceback), as pytest's usage errors do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

import boto3

from clustergate.config import ConfigError, load_config
from clustergate.config_writer import render
from clustergate.discover.calls import DiscoveryError
from clustergate.discover.cluster import discover
from clustergate.discover.drift import drift
from clustergate.discover.found import Found
from clustergate.kube import ClusterAccessError, connect

DRIFT = 1
ERROR = 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clustergate")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    init = commands.add_parser(
        "init",
        help="write a cluster config from a live cluster (or --check one against it)",
        description="Write a cluster config from a live cluster and its AWS account, or with "
        "--check list what drifted between a config and the cluster.",
    )
    init.add_argument("--kubeconfig", help="kubeconfig of the cluster (default $KUBECONFIG)")
    init.add_argument("--context", help="kubeconfig context (default: its current context)")
    init.add_argument("--cluster-name", help="EKS cluster name, when the kubeconfig names none")
    init.add_argument("--output", help="where to write the config")
    init.add_argument("--check", action="store_true", help="compare --config with the cluster")
    init.add_argument("--config", help="with --check: the config to compare")
    return parser


def _region(configured: str | None) -> Found:
    """The region as the AWS CLI and SDKs choose it: the config's (with --check), then
    AWS_REGION, AWS_DEFAULT_REGION, then the profile's."""
    if configured:
        return Found(configured, "the config's cluster.region")
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(variable):
            return Found(os.environ[variable], f"${variable}")
    region = boto3.Session().region_name
    if not region:
        raise DiscoveryError("no AWS region: set AWS_REGION, or a region in the AWS profile")
    return Found(region, f"the region of AWS profile {boto3.Session().profile_name}")


def _init(args: argparse.Namespace) -> int:
    if args.check and not args.config:
        raise DiscoveryError("--check needs --config=FILE, the config to compare")
    if not args.check and not args.output:
        raise DiscoveryError("init needs --output=FILE, where to write the config")
    existing = load_config(args.config) if args.check else None
    cluster = connect(args.kubeconfig, args.context)
    name = Found(args.cluster_name, "--cluster-name") if args.cluster_name else None
    if existing is not None and name is None:
        name = Found(existing.cluster.name, "the config's cluster.name")
    region = _region(existing.cluster.region if existing else None)
    found = discover(cluster, boto3.Session(region_name=region.value), name, region)
    if existing is not None:
        drifted = drift(existing, found)
        for item in drifted:
            print(f"drift: {item.line()}")
        print(f"{args.config}: {len(drifted)} key(s) drifted from the cluster at {cluster.server}")
        return DRIFT if drifted else 0
    text = render(found, cluster.kubeconfig, cluster.context)
    try:
        Path(args.output).write_text(text)
    except OSError as error:
        raise DiscoveryError(f"cannot write {args.output}: {error.strerror}") from None
    print(f"wrote {args.output} from {cluster.server} (context {cluster.context})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _init(args)
    except (DiscoveryError, ClusterAccessError, ConfigError) as error:
        print(f"clustergate {args.command}: {error}", file=sys.stderr)
        return ERROR
