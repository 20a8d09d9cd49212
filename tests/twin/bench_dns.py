"""How fast the twin's NodeLocal DNSCache answers on this machine (not collected by pytest).

    python tests/twin/bench_dns.py [--queries 3000]

The twin's DNS (VPC resolver, cluster DNS, one node cache) runs in one event loop in a child
process, as in the twin; clients ask from this process with dnspython (as probe pods ask from
theirs), each worker on a UDP socket of its own. Prints queries/s and p50/p99 latency for
cache hits (one and eight workers), hits over TCP (a new connection each), and cache misses
(each name new: cache → cluster DNS over TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import dns.asyncbackend
import dns.asyncquery
import dns.message
import dns.rcode

from clustergate.twin.dns import (
    ClusterDns,
    ClusterRecords,
    ClusterZone,
    NodeLocalCache,
    VpcResolver,
    installed_corefile,
)
from clustergate.twin.dns.node_cache_app import NodeCacheArgs, render
from clustergate.twin.dns.nodecache import netmap_lookup
from clustergate.twin.dns.plugins import node_cache_servers
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Network

KUBE_DNS = "10.100.0.10"
NODELOCAL = "169.254.20.10"


def serve_twin_dns(address_out: Connection, stop: Event) -> None:
    """In a child process: run the DNS side until ``stop``; send the cache's address first."""
    asyncio.run(_serve(address_out, stop))


async def _serve(address_out: Connection, stop: Event) -> None:
    netmap = Netmap()
    resolver = VpcResolver(Network(), netmap)
    records = ClusterRecords()
    for i in range(50):
        records.upsert_service(
            {
                "metadata": {"namespace": "bench", "name": f"svc-{i}"},
                "spec": {"clusterIP": f"10.100.1.{i + 1}", "ports": [{"port": 80}]},
            }
        )
    cluster_dns = ClusterDns(ClusterZone(records), lambda: netmap.resolve(resolver.ip, 53))
    installed = installed_corefile("cluster.local", NODELOCAL, KUBE_DNS, "ipvs")
    servers = node_cache_servers(render(installed, NodeCacheArgs(localip=(NODELOCAL,)), None))
    cache = NodeLocalCache([NODELOCAL], servers, netmap_lookup(netmap, resolver.ip))
    await resolver.acquire()
    netmap.publish(KUBE_DNS, 53, await cluster_dns.start())
    await cache.start()
    address_out.send(cache.listeners[NODELOCAL])
    try:
        await asyncio.to_thread(stop.wait, 600)
    finally:
        await cache.stop()
        await cluster_dns.stop()
        await resolver.release()


async def run(
    address: tuple[str, int], names: list[str], workers: int, tcp: bool = False
) -> tuple[float, list[float]]:
    """Ask every name once, spread over ``workers``; return (elapsed s, latencies s)."""
    backend = dns.asyncbackend.get_backend("asyncio")
    latencies: list[float] = []
    queue = list(reversed(names))

    async def worker() -> None:
        sock = None if tcp else await backend.make_socket(2, 2)  # AF_INET, SOCK_DGRAM
        try:
            while queue:
                query = dns.message.make_query(queue.pop(), "A")
                began = time.perf_counter()
                if tcp:
                    reply = await dns.asyncquery.tcp(query, address[0], 3, address[1])
                else:
                    reply = await dns.asyncquery.udp(query, address[0], 3, address[1], sock=sock)
                latencies.append(time.perf_counter() - began)
                assert reply.rcode() == dns.rcode.NOERROR, reply
        finally:
            if sock is not None:
                await sock.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - began, latencies


def report(label: str, elapsed: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(
        f"{label:<34} {len(ordered):>6} queries  {len(ordered) / elapsed:>8.0f} q/s  "
        f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    count = parser.parse_args().queries
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=serve_twin_dns, args=(sender, stop), daemon=True)
    server.start()
    if not receiver.poll(30):
        raise TimeoutError("the DNS side did not report its address within 30 s")
    address = receiver.recv()
    try:
        hits = [f"svc-{i % 50}.bench.svc.cluster.local" for i in range(count)]
        asyncio.run(run(address, hits[:50], 1))  # warm the cache
        report("cache hits, UDP, 1 worker", *asyncio.run(run(address, hits, 1)))
        report("cache hits, UDP, 8 workers", *asyncio.run(run(address, hits, 8)))
        report("cache hits, TCP (new conn), 1 worker", *asyncio.run(run(address, hits, 1, True)))
        misses = [f"10-0-{i // 250}-{i % 250}.bench.pod.cluster.local" for i in range(count)]
        report("cache misses, UDP, 8 workers", *asyncio.run(run(address, misses, 8)))
    finally:
        stop.set()
        server.join(15)


if __name__ == "__main__":
    main()
