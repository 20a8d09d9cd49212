"""What the twin's DNS servers take from a parsed Corefile: per server block, the zone and port,
and the arguments of the plugins it honours (``bind``, ``cache``, ``forward``, ``health``,
``prometheus``, ``reload``), checked as each plugin's setup checks them.

Other plugins (``errors``, ``loop``, ``log``, …) parse and are otherwise ignored; the table
in docs/twin-configuration.md says which. A plugin argument CoreDNS refuses is a
:class:`~clustergate.twin.dns.corefile.CorefileError` naming the plugin
(``plugin/forward: not an IP address or file: "<nil>"``), as CoreDNS exits with it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from clustergate.twin.dns.cache import CachePolicy
from clustergate.twin.dns.corefile import (
    NODE_CACHE_PLUGINS,
    CorefileError,
    Directive,
    ServerBlock,
    parse,
)

#: The port of a server block key without one (node-cache's and CoreDNS's ``-dns.port``).
DEFAULT_PORT = 53
#: The health plugin's default address.
DEFAULT_HEALTH = ":8080"
#: The prometheus plugin's default address.
DEFAULT_PROMETHEUS = "localhost:9153"
#: The cache plugin's default caps (coredns plugin/cache: maxTTL, maxNTTL, capacity).
DEFAULT_CACHE = CachePolicy(success_ttl=3600, denial_ttl=1800, capacity=9984)
#: The only resolv.conf-style file a forward may name here: the node's (dnsPolicy Default).
RESOLV_CONF = "/etc/resolv.conf"


@dataclass(frozen=True)
class Forward:
    """``forward . TO…``: each target is ``ip:port`` or :data:`RESOLV_CONF`."""

    targets: tuple[str, ...]
    force_tcp: bool = False


@dataclass(frozen=True)
class ZoneServer:
    """One server block as the twin serves it."""

    zone: str
    port: int
    #: Addresses to listen on; empty means every address of the host (no ``bind``).
    bind: tuple[str, ...]
    cache: CachePolicy | None
    forward: Forward | None
    health: str | None
    prometheus: str | None
    reload: bool
    #: Every plugin the block names, in order (what ``coredns_plugin_enabled`` lists).
    plugins: tuple[str, ...] = field(default=(), compare=False)


def node_cache_servers(text: str, filename: str = "/etc/Corefile") -> list[ZoneServer]:
    """What node-cache serves for the Corefile ``text`` (after its substitutions)."""
    return zone_servers(parse(text, NODE_CACHE_PLUGINS, filename), filename)


def zone_servers(blocks: list[ServerBlock], filename: str = "Corefile") -> list[ZoneServer]:
    """One :class:`ZoneServer` per key of every block (``a:53 b:53 { … }`` serves both),
    most specific zone first; :class:`CorefileError` for what CoreDNS would refuse."""
    servers: list[ZoneServer] = []
    seen: set[tuple[str, int]] = set()
    for block in blocks:
        for key in block.keys:
            zone, port = _key(key, block.line, filename)
            if (zone, port) in seen:
                raise CorefileError(
                    filename,
                    block.line,
                    f"cannot serve dns://{zone}:{port} - it is already defined",
                )
            seen.add((zone, port))
            servers.append(_server(zone, port, block, filename))
    return sorted(servers, key=lambda server: -_labels(server.zone))


def _labels(zone: str) -> int:
    return 0 if zone == "." else len(zone.rstrip(".").split("."))


def _key(key: str, line: int, filename: str) -> tuple[str, int]:
    text = key.removeprefix("dns://")
    if "://" in text:
        scheme = key.split("://", 1)[0]
        raise CorefileError(filename, line, f"unsupported server scheme {scheme}:// in {key}")
    zone, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise CorefileError(filename, line, f"invalid port '{port_text}' in key {key}")
        port = int(port_text)
    zone = zone or "."
    if any(not label for label in zone.rstrip(".").split(".")) and zone != ".":
        raise CorefileError(filename, line, f"invalid zone '{zone}' in key {key}")
    return (zone if zone.endswith(".") else zone + ".").lower(), port


def _server(zone: str, port: int, block: ServerBlock, filename: str) -> ZoneServer:
    def once(name: str) -> Directive | None:
        found = block.all(name)
        if len(found) > 1:
            raise _plugin_error(filename, found[1], "this plugin can only be used once per block")
        return found[0] if found else None

    bind = once("bind")
    cache = once("cache")
    forward = once("forward")
    health = once("health")
    prometheus = once("prometheus")
    return ZoneServer(
        zone=zone,
        port=port,
        bind=_bind(bind, filename) if bind else (),
        cache=_cache(cache, filename) if cache else None,
        forward=_forward(forward, filename) if forward else None,
        health=_address(health, DEFAULT_HEALTH, filename) if health else None,
        prometheus=_address(prometheus, DEFAULT_PROMETHEUS, filename) if prometheus else None,
        reload=once("reload") is not None,
        plugins=tuple(dict.fromkeys(directive.name for directive in block.directives)),
    )


def _plugin_error(filename: str, directive: Directive, message: str) -> CorefileError:
    return CorefileError(filename, directive.line, f"plugin/{directive.name}: {message}")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bind(directive: Directive, filename: str) -> tuple[str, ...]:
    if not directive.args:
        raise _plugin_error(filename, directive, "at least one address is expected")
    for address in directive.args:
        if not _is_ip(address):
            raise _plugin_error(
                filename, directive, f"not a valid IP address or interface name: {address!r}"
            )
    return directive.args


def _seconds(text: str, directive: Directive, filename: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise _plugin_error(filename, directive, f"invalid TTL or capacity {text!r}")
    return int(text)


def _cache(directive: Directive, filename: str) -> CachePolicy:
    """``cache [TTL] [ZONES…]`` and its block's ``success``/``denial CAPACITY [TTL] [MINTTL]``
    lines (the TTL caps both kinds; capacity is the success one; other block lines ignored)."""
    success, denial, capacity = DEFAULT_CACHE.success_ttl, DEFAULT_CACHE.denial_ttl, 9984
    if directive.args and directive.args[0].isdigit():
        success = denial = _seconds(directive.args[0], directive, filename)
    for line in directive.block:
        if line.name not in ("success", "denial"):
            continue
        if not 1 <= len(line.args) <= 3:
            raise _plugin_error(filename, directive, f"{line.name} needs CAPACITY [TTL] [MINTTL]")
        size = _seconds(line.args[0], directive, filename)
        ttl = _seconds(line.args[1], directive, filename) if len(line.args) > 1 else None
        if line.name == "success":
            capacity = size
            success = ttl or success
        else:
            denial = ttl or denial
    return CachePolicy(success_ttl=success, denial_ttl=denial, capacity=capacity)


def _forward(directive: Directive, filename: str) -> Forward:
    if len(directive.args) < 2:
        raise _plugin_error(
            filename, directive, "Wrong argument count or unexpected line ending after 'forward'"
        )
    targets = []
    for target in directive.args[1:]:
        text = target.removeprefix("dns://")
        if text == RESOLV_CONF:
            targets.append(text)
            continue
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if not _is_ip(host) or (port and not port.isdigit()):
            raise _plugin_error(filename, directive, f"not an IP address or file: {target!r}")
        targets.append(f"{host}:{port or DEFAULT_PORT}")
    options = {line.name for line in directive.block}
    return Forward(tuple(targets), force_tcp="force_tcp" in options)


def _address(directive: Directive, default: str, filename: str) -> str:
    if len(directive.args) > 1:
        raise _plugin_error(filename, directive, "only one address is expected")
    address = directive.args[0] if directive.args else default
    host, _, port = address.rpartition(":")
    if not port.isdigit() or (host and host != "localhost" and not _is_ip(host)):
        raise _plugin_error(filename, directive, f"invalid address {address!r}")
    return address
