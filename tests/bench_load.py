"""Benchmark (printed, never asserted): Locust load phase vs wrk against the twin's edge.

    python tests/bench_load.py [--seconds 10] [--users 16] [--workers 0]

Starts moto and the twin's traffic side in this process (weights 50/50), then loads the edge
for the same time with a Locust phase (clustergate.load_phase.run_phase) and with wrk (Debian
package ``wrk``). "Per core" is requests divided by the CPU seconds the load generator itself
used while sending them (psutil for Locust's processes from their first recorded request on;
getrusage of the reaped child for wrk), so the figure does not depend on how busy the edge is.
Both share the machine with the edge, which is a Python process too: absolute requests/s are
the edge's limit as much as the generator's, the per-core ratio is the generator's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
import psutil
from moto.server import ThreadedMotoServer

from clustergate.load_phase import run_phase
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings
from clustergate.twin.traffic import TrafficSide


class LocustCpu(threading.Thread):
    """Samples the CPU time of this process's Locust children from their first request on."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(daemon=True)
        self._log_dir = log_dir
        self._at_first_request: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self.done = threading.Event()

    def _sample(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for child in psutil.Process().children(recursive=True):
            try:
                if "locust" in " ".join(child.cmdline()):
                    cpu = child.cpu_times()
                    times[child.pid] = cpu.user + cpu.system
            except psutil.NoSuchProcess:
                continue
        return times

    def run(self) -> None:
        while not self.done.wait(0.1):
            sample = self._sample()
            self._last.update(sample)
            started = any(p.stat().st_size for p in self._log_dir.glob("*.jsonl"))
            if started:
                for pid, cpu in sample.items():
                    self._at_first_request.setdefault(pid, cpu)

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - cpu for pid, cpu in self._at_first_request.items())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_locust(url: str, seconds: float, users: int, workers: int) -> tuple[float, float]:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    sampler = LocustCpu(log_dir)
    sampler.start()
    result = run_phase(url, users, users, seconds, log_dir, workers=workers)
    sampler.done.set()
    sampler.join()
    print(f"locust ({users} users, {workers or 'no'} workers): {result.describe()}")
    shutil.rmtree(log_dir)
    return result.requests_per_s, len(result.records) / sampler.seconds


def bench_wrk(url: str, seconds: float, connections: int) -> tuple[float, float]:
    before = _children_cpu()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    cpu = _children_cpu() - before
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    print(f"wrk (1 thread, {connections} connections): {total:,} requests, {rate:,.0f}/s")
    return rate, total / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        moto_port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log, per request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    side = TrafficSide(TwinSettings(state_dir=tempfile.mkdtemp()), Netmap(), moto_url)
    asyncio.run_coroutine_threadsafe(side.start(), loop).result(30)
    facts = asyncio.run_coroutine_threadsafe(side.bootstrap(), loop).result(60)
    boto3.client(
        "elbv2",
        endpoint_url=moto_url,
        region_name="us-west-2",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).modify_listener(
        ListenerArn=facts.listener_arn,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": arn, "Weight": 50}
                        for arn in facts.target_groups.values()
                    ]
                },
            }
        ],
    )
    time.sleep(2)  # past the propagation delay
    url = side.edge_url + "/"
    print(f"edge {url}, {os.cpu_count()} cores, {args.seconds:.0f}s each")
    locust_rate, locust_per_core = bench_locust(url, args.seconds, args.users, args.workers)
    wrk_rate, wrk_per_core = bench_wrk(url, args.seconds, args.users)
    print(f"requests/s:          locust {locust_rate:8,.0f}   wrk {wrk_rate:8,.0f}")
    print(f"requests/s per core: locust {locust_per_core:8,.0f}   wrk {wrk_per_core:8,.0f}")
    print(
        f"ratio locust/wrk: {locust_rate / wrk_rate:.2f} in throughput, "
        f"{locust_per_core / wrk_per_core:.3f} per core"
    )
    asyncio.run_coroutine_threadsafe(side.stop(), loop).result(30)
    moto.stop()


if __name__ == "__main__":
    main()
