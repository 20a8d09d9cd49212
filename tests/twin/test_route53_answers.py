"""The twin's Route 53 answers as a table: record sets, a question and the draws → the answer.

Each row gives the zone's record sets (as ``ListResourceRecordSets`` returns them), the query,
the uniform draws the weighted choices get, and the answer expected: rcode, AA, and the
answer section as text with its TTLs.
"""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from clustergate.twin.route53.answers import HostedZone, answer, pick

ZONE = "clustergate.test."


def weighted(identifier: str, weight: int, target: str, ttl: int = 5) -> dict[str, Any]:
    return {
        "Name": "shop.clustergate.test.",
        "Type": "CNAME",
        "SetIdentifier": identifier,
        "Weight": weight,
        "TTL": ttl,
        "ResourceRecords": [{"Value": target}],
    }


def address(name: str, ip: str, ttl: int = 5) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": ip}]}


BASE = [
    {
        "Name": ZONE,
        "Type": "SOA",
        "TTL": 900,
        # moto 5 stores the SOA like this; the answer must carry the text inside.
        "ResourceRecords": [
            {
                "Value": "{'Value': 'ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 "
                "1209600 86400'}"
            }
        ],
    },
    {"Name": ZONE, "Type": "NS", "TTL": 172800, "ResourceRecords": [{"Value": "ns-1.example."}]},
    address("old-cluster.clustergate.test.", "127.0.0.2"),
    address("new-cluster.clustergate.test.", "127.0.0.3", ttl=7),
]
SPLIT = [
    weighted("old", 90, "old-cluster.clustergate.test"),
    weighted("new", 10, "new-cluster.clustergate.test", ttl=3),
]
SOA = (
    "clustergate.test. 900 IN SOA ns-2048.awsdns-64.com. hostmaster.example.com. "
    "1 7200 900 1209600 86400"
)

ROWS = [
    # (id, record sets, qname, qtype, draws, rcode, answer lines)
    (
        "weighted CNAME, draw in old's 90%, chain followed to its in-zone A record",
        SPLIT,
        "shop.clustergate.test.",
        "A",
        [0.5],
        "NOERROR",
        [
            "shop.clustergate.test. 5 IN CNAME old-cluster.clustergate.test.",
            "old-cluster.clustergate.test. 5 IN A 127.0.0.2",
        ],
    ),
    (
        "draw in new's 10% (the group is ordered by SetIdentifier): new's value and own TTL",
        SPLIT,
        "shop.clustergate.test.",
        "A",
        [0.05],
        "NOERROR",
        [
            "shop.clustergate.test. 3 IN CNAME new-cluster.clustergate.test.",
            "new-cluster.clustergate.test. 7 IN A 127.0.0.3",
        ],
    ),
    (
        "asking for the CNAME itself is not followed",
        SPLIT,
        "shop.clustergate.test.",
        "CNAME",
        [0.05],
        "NOERROR",
        ["shop.clustergate.test. 3 IN CNAME new-cluster.clustergate.test."],
    ),
    (
        "names are case-insensitive",
        SPLIT,
        "SHOP.ClusterGate.test.",
        "CNAME",
        [0.5],
        "NOERROR",
        ["SHOP.ClusterGate.test. 5 IN CNAME old-cluster.clustergate.test."],
    ),
    (
        "a target outside the zone ends the answer at the CNAME",
        [weighted("old", 1, "elsewhere.example.com"), weighted("new", 0, "x.example.com")],
        "shop.clustergate.test.",
        "A",
        [0.5],
        "NOERROR",
        ["shop.clustergate.test. 5 IN CNAME elsewhere.example.com."],
    ),
    (
        "a plain A record is answered whole",
        [],
        "old-cluster.clustergate.test.",
        "A",
        [],
        "NOERROR",
        ["old-cluster.clustergate.test. 5 IN A 127.0.0.2"],
    ),
    (
        "a name with records but not of this type: NODATA with the SOA",
        [],
        "old-cluster.clustergate.test.",
        "AAAA",
        [],
        "NOERROR",
        [],
    ),
    (
        "a name with nothing: NXDOMAIN",
        [],
        "nothing.clustergate.test.",
        "A",
        [],
        "NXDOMAIN",
        [],
    ),
    (
        "a zone not hosted: REFUSED",
        [],
        "example.com.",
        "A",
        [],
        "REFUSED",
        [],
    ),
]


@pytest.mark.parametrize(
    ("records", "qname", "qtype", "draws", "rcode", "lines"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_route53_answer_table(
    records: list[dict[str, Any]],
    qname: str,
    qtype: str,
    draws: list[float],
    rcode: str,
    lines: list[str],
) -> None:
    zone = HostedZone.from_api(ZONE, [*BASE, *records])
    remaining = iter(draws)
    response = answer([zone], dns.message.make_query(qname, qtype), lambda: next(remaining))
    assert dns.rcode.to_text(response.rcode()) == rcode
    assert [line for rrset in response.answer for line in rrset.to_text().splitlines()] == lines
    assert next(remaining, None) is None, "every draw given is used"
    if rcode != "REFUSED":
        assert response.flags & dns.flags.AA
    if rcode == "NXDOMAIN" or (rcode == "NOERROR" and not lines):
        assert [rrset.to_text() for rrset in response.authority] == [SOA]


PICKS = [
    # (weights, draw, index chosen)
    ((90, 10), 0.0, 0),
    ((90, 10), 0.8999, 0),
    ((90, 10), 0.9, 1),
    ((0, 100), 0.0, 1),
    ((100, 0), 0.9999, 0),
    ((0, 0), 0.49, 0),  # every weight 0: equal chances
    ((0, 0), 0.5, 1),
    ((1, 1, 2), 0.5, 2),
]


@pytest.mark.parametrize(("weights", "draw", "chosen"), PICKS)
def test_weighted_pick(weights: tuple[int, ...], draw: float, chosen: int) -> None:
    zone = HostedZone.from_api(
        ZONE,
        [weighted(str(i), w, f"t{i}.clustergate.test") for i, w in enumerate(weights)],
    )
    assert pick(zone.record_sets, draw) is zone.record_sets[chosen]
