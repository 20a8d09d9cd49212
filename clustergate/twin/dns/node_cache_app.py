"""What node-cache (kubernetes/dns ``cmd/node-cache``) does before CoreDNS reads a Corefile.

Its container arguments (``-localip``, ``-basecorefile``, ``-conf``, ``-upstreamsvc``,
``-setupiptables``, ``-health-port``; the rest are accepted and ignored), the base Corefile
it reads from the ``node-local-dns`` ConfigMap (mounted as ``/etc/coredns/Corefile.base``),
and the variables it substitutes there before writing ``/etc/Corefile``:

- ``__PILLAR__CLUSTER__DNS__``: the ClusterIP of the ``-upstreamsvc`` Service (node-cache
  reads it from ``<NAME>_SERVICE_HOST``; ``<nil>`` when there is none, which the forward
  plugin then refuses);
- ``__PILLAR__UPSTREAM__SERVERS__``: ``/etc/resolv.conf`` (no kube-dns ConfigMap upstreams);
- ``__PILLAR__LOCAL__DNS__``: the ``-localip`` addresses, space-separated;
- ``__PILLAR__DNS__SERVER__`` left over: removed.

The other variables (``__PILLAR__DNS__DOMAIN__``, and ``__PILLAR__LOCAL__DNS__`` in the
manifest) are the installer's, replaced by ``sed`` before the ConfigMap is applied
(:func:`installed_corefile`).
"""

from __future__ import annotations

import ipaddress
import posixpath
from dataclasses import dataclass
from typing import Any

UPSTREAM_SERVERS = "__PILLAR__UPSTREAM__SERVERS__"
CLUSTER_DNS = "__PILLAR__CLUSTER__DNS__"
LOCAL_DNS = "__PILLAR__LOCAL__DNS__"
DNS_SERVER = "__PILLAR__DNS__SERVER__"
DNS_DOMAIN = "__PILLAR__DNS__DOMAIN__"

#: The upstream manifest's Corefile (cluster/addons/dns/nodelocaldns/nodelocaldns.yaml).
BASE_COREFILE = f"""\
{DNS_DOMAIN}:53 {{
    errors
    cache {{
            success 9984 30
            denial 9984 5
    }}
    reload
    loop
    bind {LOCAL_DNS} {DNS_SERVER}
    forward . {CLUSTER_DNS} {{
            force_tcp
    }}
    prometheus :9253
    health {LOCAL_DNS}:8080
    }}
in-addr.arpa:53 {{
    errors
    cache 30
    reload
    loop
    bind {LOCAL_DNS} {DNS_SERVER}
    forward . {CLUSTER_DNS} {{
            force_tcp
    }}
    prometheus :9253
    }}
ip6.arpa:53 {{
    errors
    cache 30
    reload
    loop
    bind {LOCAL_DNS} {DNS_SERVER}
    forward . {CLUSTER_DNS} {{
            force_tcp
    }}
    prometheus :9253
    }}
.:53 {{
    errors
    cache 30
    reload
    loop
    bind {LOCAL_DNS} {DNS_SERVER}
    forward . {UPSTREAM_SERVERS}
    prometheus :9253
    }}
"""


class NodeCacheError(RuntimeError):
    """node-cache (or CoreDNS, for a Corefile that is not there) refused to start; ``str()``
    is the line it logs before exiting."""


@dataclass(frozen=True)
class NodeCacheArgs:
    localip: tuple[str, ...]
    basecorefile: str = "/etc/coredns/Corefile.base"
    conf: str = "/etc/Corefile"
    upstreamsvc: str = "kube-dns"
    setupiptables: bool = True
    health_port: int = 8080


_FLAGS = {
    "localip": "localip",
    "basecorefile": "basecorefile",
    "conf": "conf",
    "corefile": "conf",
    "upstreamsvc": "upstreamsvc",
    "setupiptables": "setupiptables",
    "health-port": "health_port",
}
_BOOLEANS = {"setupiptables", "setupinterface", "setupebtables", "skipteardown"}


def parse_args(argv: list[str]) -> NodeCacheArgs:
    """node-cache's flags as Go's ``flag`` reads them (``-x v``, ``-x=v``, ``--x``; a boolean
    takes ``=false`` only)."""
    values: dict[str, Any] = {}
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if not word.startswith("-"):
            break
        name, has_value, value = word.lstrip("-").partition("=")
        if name in _BOOLEANS:
            if has_value and value.lower() not in ("true", "false", "1", "0"):
                raise NodeCacheError(f"Error parsing flags - invalid boolean value {value!r}")
            parsed = not has_value or value.lower() in ("true", "1")
            if name in _FLAGS:
                values[_FLAGS[name]] = parsed
            continue
        if not has_value:
            if index >= len(argv):
                raise NodeCacheError(f"Error parsing flags - flag needs an argument: -{name}")
            value = argv[index]
            index += 1
        if name in _FLAGS:
            values[_FLAGS[name]] = value
    local = str(values.pop("localip", ""))
    for address in local.split(","):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise NodeCacheError(
                f"Error parsing flags - invalid localip specified - {address!r}, Exiting"
            ) from None
    port = str(values.pop("health_port", "8080"))
    if not port.isdigit():
        raise NodeCacheError(f"invalid healthcheck port specified - {port!r}")
    return NodeCacheArgs(localip=tuple(local.split(",")), health_port=int(port), **values)


def render(base: str, args: NodeCacheArgs, cluster_dns_ip: str | None) -> str:
    """``/etc/Corefile`` as node-cache writes it from the base Corefile."""
    text = base.replace(UPSTREAM_SERVERS, "/etc/resolv.conf")
    text = text.replace(CLUSTER_DNS, cluster_dns_ip or "<nil>")
    text = text.replace(LOCAL_DNS, " ".join(args.localip))
    return text.replace(DNS_SERVER, "")


def installed_corefile(domain: str, local_ip: str, kube_dns_ip: str, proxy_mode: str) -> str:
    """The ConfigMap's Corefile after the documented install's ``sed``: in iptables mode the
    cache also binds the kube-dns IP; in IPVS mode it forwards to kube-dns directly."""
    text = BASE_COREFILE.replace(DNS_DOMAIN, domain).replace(LOCAL_DNS, local_ip)
    if proxy_mode == "iptables":
        return text.replace(DNS_SERVER, kube_dns_ip)
    return text.replace(f" {DNS_SERVER}", "").replace(CLUSTER_DNS, kube_dns_ip)


@dataclass(frozen=True)
class ConfigSource:
    """Where the base Corefile comes from: ConfigMap ``name``'s ``key``."""

    configmap: str
    key: str


def config_source(pod: dict[str, Any], container: dict[str, Any], path: str) -> ConfigSource:
    """The ConfigMap volume (and key) that puts a file at ``path`` in ``container``; a
    :class:`NodeCacheError` as node-cache logs it when nothing does."""
    directory, filename = posixpath.split(path)
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if mount.get("mountPath", "").rstrip("/") != directory:
            continue
        configmap = (volumes.get(mount.get("name")) or {}).get("configMap")
        if not configmap:
            continue
        items = configmap.get("items")
        if not items:
            return ConfigSource(configmap["name"], filename)
        for item in items:
            if item.get("path") == filename:
                return ConfigSource(configmap["name"], item["key"])
    raise NodeCacheError(f"open {path}: no such file or directory (no ConfigMap volume there)")
