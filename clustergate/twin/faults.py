"""The twin's named faults: each one a misbehaviour that real clusters show.

A fault is switched on at start-up (``python -m clustergate.twin up --fault NAME``) and read by
the component it changes through ``settings.has_fault(NAME)``. The fault matrix in ``tests/``
runs the checks against a twin with each fault and expects the check named here to fail with a
message that names the cause; a fault without a row there fails the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    component: str
    summary: str


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault(
            "eviction-ignores-pdb",
            "apiserver",
            "The eviction subresource deletes pods without consulting PodDisruptionBudgets.",
        ),
        Fault(
            "webhook-off",
            "apiserver",
            "The pod identity webhook's MutatingWebhookConfiguration is missing (as after kubectl "
            "delete mutatingwebhookconfiguration pod-identity-webhook): pods get no AWS env, no "
            "token volume.",
        ),
        Fault(
            "kubelet-slow-ready",
            "kubelet",
            "Every pod takes slow_start seconds longer to start (slow image pulls, waits for IPs).",
        ),
        Fault(
            "irsa-wildcard-trust",
            "aws",
            "One IRSA role trusts system:serviceaccount:* (any service account of the cluster).",
        ),
        Fault(
            "irsa-no-audience",
            "aws",
            "One IRSA role's trust policy has no :aud condition.",
        ),
        Fault(
            "irsa-role-admin",
            "aws",
            "One IRSA role also has a policy allowing every action on every resource.",
        ),
        Fault(
            "imds-hop-limit-2",
            "aws",
            "Node launch templates set the IMDSv2 hop limit to 2: pods reach node credentials.",
        ),
        Fault(
            "nodelocal-missing-on-node",
            "dns",
            "One node has no node-local-dns pod (a taint the DaemonSet does not tolerate).",
        ),
        Fault(
            "dns-bypass-cache",
            "dns",
            "Pods' queries go to kube-dns directly; the node caches never see them.",
        ),
        Fault(
            "dns-slow-cache",
            "dns",
            "The node caches answer about 200 ms late.",
        ),
        Fault(
            "autoscaler-stuck",
            "autoscaler",
            "The autoscaler runs and reports Healthy but never raises desired capacity.",
        ),
        Fault(
            "autoscaler-slow",
            "autoscaler",
            "New nodes take slow_factor times longer than max-node-provision-time allows.",
        ),
        Fault(
            "scale-down-never",
            "autoscaler",
            "The autoscaler never removes idle nodes.",
        ),
        Fault(
            "upgrade-skips-drain",
            "aws",
            "Node-group updates terminate old nodes without draining them (pods just vanish).",
        ),
        Fault(
            "upgrade-stuck",
            "aws",
            "Node-group updates launch new nodes that never become Ready (NodeCreationFailure).",
        ),
        Fault(
            "cutover-skewed-split",
            "traffic",
            "The edge sends the new cluster half the share its weight asks for.",
        ),
        Fault(
            "new-backend-errors",
            "traffic",
            "The new cluster answers 5% of requests with 503.",
        ),
        Fault(
            "new-backend-slow",
            "traffic",
            "The new cluster answers about 80 ms slower than the old one.",
        ),
        Fault(
            "weights-ignored",
            "traffic",
            "The edge and the Route 53 name servers never pick up weight changes made through "
            "the AWS API.",
        ),
    )
}


class UnknownFaultError(ValueError):
    pass


def validate_faults(names: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(names) - FAULTS.keys())
    if unknown:
        known = ", ".join(sorted(FAULTS))
        raise UnknownFaultError(f"unknown twin fault(s) {', '.join(unknown)}; known: {known}")
