"""The Corefile parser and the plugin arguments the twin's DNS servers take from it.

Tables of input Corefile → parsed blocks, → served zones, and → the error CoreDNS logs.
"""

from __future__ import annotations

import pytest

from clustergate.twin.dns.cache import CachePolicy
from clustergate.twin.dns.corefile import (
    COREDNS_PLUGINS,
    CorefileError,
    Directive,
    ServerBlock,
    parse,
)
from clustergate.twin.dns.plugins import Forward, ZoneServer, zone_servers

#: The upstream node-local-dns Corefile after node-cache's substitution (iptables mode).
UPSTREAM = """\
cluster.local:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind 169.254.20.10 10.100.0.10
    forward . 10.100.0.20 {
            force_tcp
    }
    prometheus :9253
    health 169.254.20.10:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.100.0.10
    forward . 10.100.0.20 {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.100.0.10
    forward . /etc/resolv.conf
    prometheus :9253
    }
"""

PARSED = [
    (
        "one block, plugins with and without args",
        "example.org {\n  whoami\n  log\n  bind 127.0.0.1\n}\n",
        [
            ServerBlock(
                ("example.org",),
                (Directive("whoami"), Directive("log"), Directive("bind", ("127.0.0.1",))),
            )
        ],
    ),
    (
        "nested block and arguments before it",
        "a:53 {\n forward . 1.2.3.4 5.6.7.8 {\n  force_tcp\n  max_fails 3\n }\n}",
        [
            ServerBlock(
                ("a:53",),
                (
                    Directive(
                        "forward",
                        (".", "1.2.3.4", "5.6.7.8"),
                        (Directive("force_tcp"), Directive("max_fails", ("3",))),
                    ),
                ),
            )
        ],
    ),
    (
        "several keys, comma or space separated",
        "a.org:53, b.org:53 c.org {\n errors\n}",
        [ServerBlock(("a.org:53", "b.org:53", "c.org"), (Directive("errors"),))],
    ),
    (
        "comments, quotes, one-line blocks",
        '# top\n.:53 { # here\n  log "a b" # tail\n}\nz { errors }\n',
        [
            ServerBlock((".:53",), (Directive("log", ("a b",)),)),
            ServerBlock(
                ("z",),
                (
                    Directive(
                        "errors",
                    ),
                ),
            ),
        ],
    ),
    ("empty file", "\n# nothing\n", []),
]


@pytest.mark.parametrize(("text", "expected"), [p[1:] for p in PARSED], ids=[p[0] for p in PARSED])
def test_parse(text: str, expected: list[ServerBlock]) -> None:
    assert parse(text) == expected


def test_line_numbers_are_kept() -> None:
    blocks = parse(UPSTREAM)
    assert [b.line for b in blocks] == [1, 16, 27]
    assert blocks[0].first("forward") is not None
    assert blocks[0].first("forward").line == 10  # type: ignore[union-attr]


ERRORS = [
    (
        "typo in a plugin name",
        "a {\n  errors\n  forwrd . 1.2.3.4\n}",
        3,
        "Unknown directive 'forwrd'",
    ),
    ("closing brace missing", "a {\n  errors\n", 2, "Unexpected EOF: the '{' of line 1"),
    ("stray closing brace", "}\n", 1, "a server block needs keys"),
    ("keys without a body", "a:53\nerrors\n", 2, "Expected '{'"),
    ("nested block not closed", "a {\n cache {\n  success 1\n}\n", 4, "Unexpected EOF"),
    ("quote not closed", 'a {\n log "x\n}\n', 2, "Unterminated quoted string"),
    ("bind to a name", "a {\n bind kube-dns\n}", 2, "plugin/bind: not a valid IP address"),
    ("bind without address", "a {\n bind\n}", 2, "plugin/bind: at least one address"),
    ("forward without target", "a {\n forward .\n}", 2, "plugin/forward: Wrong argument count"),
    (
        "forward to an unsubstituted variable",
        "a {\n forward . __PILLAR__CLUSTER__DNS__\n}",
        2,
        "plugin/forward: not an IP address or file: '__PILLAR__CLUSTER__DNS__'",
    ),
    ("forward to nothing found", "a {\n forward . <nil>\n}", 2, "not an IP address or file"),
    ("cache capacity not a number", "a {\n cache {\n  success lots\n }\n}", 2, "'lots'"),
    ("cache block line short", "a {\n cache {\n  success\n }\n}", 2, "success needs CAPACITY"),
    ("two forwards", "a {\n forward . 1.1.1.1\n forward . 2.2.2.2\n}", 3, "only be used once"),
    ("zone twice", "a:53 {\n errors\n}\na {\n errors\n}", 4, "dns://a.:53 - it is already"),
    ("bad port", "a:5x3 {\n errors\n}", 1, "invalid port '5x3'"),
    ("health address", "a {\n health 169.254.20.10\n}", 2, "plugin/health: invalid address"),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_the_line_and_the_cause(text: str, line: int, message: str) -> None:
    with pytest.raises(CorefileError) as raised:
        zone_servers(parse(text, filename="/etc/Corefile"), filename="/etc/Corefile")
    assert raised.value.line == line
    assert str(raised.value).startswith(f"/etc/Corefile:{line} - Error during parsing: ")
    assert message in str(raised.value)


def test_coredns_knows_its_own_plugins() -> None:
    text = ".:53 {\n kubernetes cluster.local {\n  pods insecure\n }\n ready\n}"
    with pytest.raises(CorefileError, match="Unknown directive 'kubernetes'"):
        parse(text)
    assert parse(text, COREDNS_PLUGINS)[0].first("ready") == Directive("ready")


CLUSTER_ZONE = ZoneServer(
    zone="cluster.local.",
    port=53,
    bind=("169.254.20.10", "10.100.0.10"),
    cache=CachePolicy(success_ttl=30, denial_ttl=5, capacity=9984),
    forward=Forward(("10.100.0.20:53",), force_tcp=True),
    health="169.254.20.10:8080",
    prometheus=":9253",
    reload=True,
)
SERVED = [
    (
        "the upstream node-local-dns Corefile",
        UPSTREAM,
        [
            CLUSTER_ZONE,
            ZoneServer(
                "in-addr.arpa.",
                53,
                ("169.254.20.10", "10.100.0.10"),
                CachePolicy(30, 30, 9984),
                Forward(("10.100.0.20:53",), True),
                None,
                ":9253",
                True,
            ),
            ZoneServer(
                ".",
                53,
                ("169.254.20.10", "10.100.0.10"),
                CachePolicy(30, 30, 9984),
                Forward(("/etc/resolv.conf",)),
                None,
                ":9253",
                True,
            ),
        ],
    ),
    (
        "defaults: no bind, cache and health without arguments, port and scheme in the key",
        "dns://.:1053 {\n cache\n health\n prometheus\n forward . 10.0.0.2:5353 dns://1.1.1.1\n}",
        [
            ZoneServer(
                ".",
                1053,
                (),
                CachePolicy(3600, 1800, 9984),
                Forward(("10.0.0.2:5353", "1.1.1.1:53")),
                ":8080",
                "localhost:9153",
                False,
            )
        ],
    ),
    (
        "most specific zone first, one server per key",
        ". {\n errors\n}\nsvc.cluster.local CLUSTER.local {\n errors\n}",
        [
            ZoneServer("svc.cluster.local.", 53, (), None, None, None, None, False),
            ZoneServer("cluster.local.", 53, (), None, None, None, None, False),
            ZoneServer(".", 53, (), None, None, None, None, False),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [s[1:] for s in SERVED], ids=[s[0] for s in SERVED])
def test_zone_servers(text: str, expected: list[ZoneServer]) -> None:
    assert zone_servers(parse(text)) == expected
