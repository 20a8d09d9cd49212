"""``python -m clustergate.probe KIND [options]``: run one probe, print one JSON line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clustergate.probe import dns, identity

RESULT_KEY = "clustergate_probe"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clustergate.probe")
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("env", help="AWS variables and token mount the pod got")
    kinds.add_parser("token", help="claims of the pod's web identity token")
    assume = kinds.add_parser("assume", help="AssumeRoleWithWebIdentity with the pod's token")
    assume.add_argument("--role-arn")
    assume.add_argument("--call", action="append", default=[], help="service:Operation:{json}")
    web = kinds.add_parser("web-identity", help="env, token claims, own role, other roles")
    web.add_argument("--try-role", action="append", default=[], help="a role to attempt")
    web.add_argument("--call", action="append", default=[], help="service:Operation:{json}")
    chain = kinds.add_parser("default-credentials", help="what the default credential chain yields")
    chain.add_argument("--region", help="region of the STS endpoint that names the identity")
    imds = kinds.add_parser("imds", help="reach the instance metadata service as a container")
    imds.add_argument("--timeout", type=float, default=2.0)
    resolve = kinds.add_parser("dns", help="resolve names through the pod's resolv.conf")
    resolve.add_argument("names", nargs="+")
    resolve.add_argument("--count", type=int, default=10)
    resolve.add_argument("--timeout", type=float, default=2.0)
    loop = kinds.add_parser("dns-loop", help="resolve one name repeatedly; longest gap")
    loop.add_argument("name")
    loop.add_argument("--duration", type=float, required=True)
    loop.add_argument("--interval", type=float, default=0.05)
    loop.add_argument("--timeout", type=float, default=0.5)
    return parser


def run(argv: list[str]) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.kind == "env":
        return identity.env()
    if args.kind == "token":
        return identity.token()
    if args.kind == "assume":
        return identity.assume(args.role_arn, args.call)
    if args.kind == "web-identity":
        return identity.web_identity(args.try_role, args.call)
    if args.kind == "default-credentials":
        return identity.default_credentials(args.region)
    if args.kind == "imds":
        return identity.imds(args.timeout)
    if args.kind == "dns":
        return dns.resolve(args.names, args.count, args.timeout)
    return dns.resolve_loop(args.name, args.duration, args.interval, args.timeout)


def main() -> int:
    try:
        result = run(sys.argv[1:])
    except Exception as error:  # the line must be printed whatever went wrong
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps({RESULT_KEY: sys.argv[1] if len(sys.argv) > 1 else "", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
