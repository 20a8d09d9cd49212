"""The twin's DNS: cluster DNS (CoreDNS), NodeLocal DNSCache per node, and the VPC resolver.

Real DNS over UDP and TCP on loopback; the simulated addresses (pod IPs, the kube-dns Service
IP, 169.254.20.10, the VPC resolver) reach them through the netmap. The twin composes it with
:func:`clustergate.twin.dns.addons.register_dns_addons`.
"""

from clustergate.twin.dns.addons import VpcResolver, register_dns_addons, vpc_resolver_ip
from clustergate.twin.dns.cluster_dns import ClusterDns
from clustergate.twin.dns.cluster_zone import ClusterZone
from clustergate.twin.dns.feeder import RecordsFeeder
from clustergate.twin.dns.internet import InternetZone, internet_names
from clustergate.twin.dns.node_cache_app import installed_corefile
from clustergate.twin.dns.nodecache import NodeLocalCache
from clustergate.twin.dns.records import ClusterRecords

__all__ = [
    "ClusterDns",
    "ClusterRecords",
    "ClusterZone",
    "InternetZone",
    "NodeLocalCache",
    "RecordsFeeder",
    "VpcResolver",
    "installed_corefile",
    "internet_names",
    "register_dns_addons",
    "vpc_resolver_ip",
]
