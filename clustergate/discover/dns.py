"""NodeLocal DNSCache: its address and the kube-proxy mode it was set up for.

node-cache binds the addresses of its ``-localip`` argument and of its Corefile's ``bind``
lines (ConfigMap ``kube-system/node-local-dns``): the link-local address and, in iptables mode,
the kube-dns Service IP too, so that it answers queries sent there. In IPVS mode it binds the
link-local address only, and kubelets point pods at it.
"""

from __future__ import annotations

from typing import Any

from clustergate.discover import calls
from clustergate.discover.found import Found, Section
from clustergate.kube import Cluster

NAMESPACE = "kube-system"
NAME = "node-local-dns"
KUBE_DNS = "kube-dns"
LINK_LOCAL = "169.254."
SLO = (
    "slo: {p50_ms: N, p99_ms: N} is your DNS latency objective; nobody can discover it, and "
    "without it the latency check skips."
)


def local_ips(args: list[str]) -> list[str]:
    """The addresses of node-cache's ``-localip`` (one comma-separated value)."""
    for index, arg in enumerate(args):
        if arg in ("-localip", "--localip") and index + 1 < len(args):
            return args[index + 1].split(",")
        if arg.startswith(("-localip=", "--localip=")):
            return arg.split("=", 1)[1].split(",")
    return []


def corefile_binds(corefile: str) -> list[str]:
    """Every address of the Corefile's ``bind`` lines, in order, once each."""
    binds: list[str] = []
    for line in corefile.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["bind"]:
            binds.extend(word for word in words[1:] if word not in binds)
    return binds


def _one(cluster: Cluster, kind: str, name: str) -> Any:
    lists = {
        "daemonset": cluster.apps().list_namespaced_daemon_set,
        "configmap": cluster.core().list_namespaced_config_map,
        "service": cluster.core().list_namespaced_service,
    }
    found = calls.kube(
        cluster,
        f"listing {kind}s in {NAMESPACE}",
        lists[kind],
        NAMESPACE,
        field_selector=f"metadata.name={name}",
    ).items
    return found[0] if found else None


def discover(cluster: Cluster) -> Section:
    section = Section(notes=[SLO])
    daemonset = _one(cluster, "daemonset", NAME)
    if daemonset is None:
        section.notes.insert(
            0,
            f"No DaemonSet {NAMESPACE}/{NAME}: NodeLocal DNSCache is not installed and the dns "
            "suite fails until it is; set nodelocal_ip and mode to what you install.",
        )
        return section
    containers = daemonset.spec.template.spec.containers
    args = [str(a) for c in containers for a in [*(c.command or []), *(c.args or [])]]
    addresses, source = local_ips(args), f"DaemonSet {NAMESPACE}/{NAME} -localip"
    configmap = _one(cluster, "configmap", NAME)
    binds = corefile_binds(((configmap.data if configmap else None) or {}).get("Corefile", ""))
    if binds and addresses and set(binds) != set(addresses):
        section.notes.insert(
            0,
            f"The DaemonSet's -localip {','.join(addresses)} and the Corefile's bind "
            f"{' '.join(binds)} differ; the values below follow -localip.",
        )
    if not addresses:
        addresses, source = binds, f"ConfigMap {NAMESPACE}/{NAME} Corefile bind"
    link_local = [a for a in addresses if a.startswith(LINK_LOCAL)]
    if not link_local:
        section.notes.insert(
            0, f"{source} has no link-local address ({addresses}); set nodelocal_ip by hand."
        )
        return section
    section.values["nodelocal_ip"] = Found(link_local[0], source)
    service = _one(cluster, "service", KUBE_DNS)
    kube_dns_ip = service.spec.cluster_ip if service else None
    if kube_dns_ip:
        bound = kube_dns_ip in addresses
        mode, why = ("iptables", "also binds") if bound else ("ipvs", "does not bind")
        why = f"{source} {why} the kube-dns Service IP {kube_dns_ip}"
    else:
        mode = "ipvs" if len(addresses) == 1 else "iptables"
        why = f"{source} binds {len(addresses)} address(es); no Service {NAMESPACE}/{KUBE_DNS}"
    section.values["mode"] = Found(mode, why)
    return section
