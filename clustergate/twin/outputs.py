"""The files a running twin leaves in its state directory for the suites and for people.

- ``kubeconfig``: context ``clustergate-twin`` (the default, cluster-admin) and a read-only
  ``clustergate-twin-viewer``, so ``kubectl --kubeconfig DIR/kubeconfig get nodes`` works.
- ``aws-env.json``: the standard AWS variables (AWS_ENDPOINT_URL and dummy keys) that point
  boto3 and the AWS CLI at the twin's AWS endpoint.
- ``cluster.yaml``: the cluster config a live run would be given, describing this twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from clustergate.twin.settings import ACCOUNT_ID, TwinSettings

CONTEXT = "clustergate-twin"
VIEWER_CONTEXT = "clustergate-twin-viewer"


def write_kubeconfig(path: Path, server: str, ca_pem_path: str, tokens: dict[str, str]) -> None:
    """One context per identity: ``clustergate-twin`` (cluster-admin) and, for tests of the
    preflight, ``clustergate-twin-viewer`` (get/list/watch only)."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": server, "certificate-authority": ca_pem_path}}
        ],
        "users": [{"name": name, "user": {"token": token}} for name, token in tokens.items()],
        "contexts": [
            {"name": name, "context": {"cluster": CONTEXT, "user": name}} for name in tokens
        ],
        "current-context": CONTEXT,
    }
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    path.chmod(0o600)


def aws_environment(settings: TwinSettings, endpoint_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": settings.network.region,
        "AWS_DEFAULT_REGION": settings.network.region,
    }


def write_aws_env(path: Path, environment: dict[str, str]) -> None:
    path.write_text(json.dumps(environment, indent=2))
    path.chmod(0o600)


def cluster_config(settings: TwinSettings, facts: dict[str, Any]) -> dict[str, Any]:
    """The config for this twin. Time limits are the twin's short delays with headroom."""
    timings = settings.timings
    config: dict[str, Any] = {
        "cluster": {
            "name": settings.network.cluster_name,
            "region": settings.network.region,
            "kubernetes_version": settings.network.kubernetes_version,
            "account_id": ACCOUNT_ID,
        },
        "probe": {"image": facts["probe_image"]},
        "irsa": {
            "mappings": [
                {
                    "namespace": mapping.namespace,
                    "service_account": mapping.service_account,
                    "role_arn": mapping.role_arn,
                    "must_allow": [_call(*call) for call in mapping.may_call],
                    "must_deny": [_call(*call) for call in mapping.must_not_call],
                }
                for mapping in facts["irsa_mappings"]
            ],
        },
        "dns": {
            "nodelocal_ip": settings.network.nodelocal_ip,
            "mode": settings.network.proxy_mode,
            "queries_per_name": 10,
            "external_names": ["sts.us-west-2.amazonaws.com"],
            "slo": {"p50_ms": 100, "p99_ms": 1000},
            "restart_gap_max_s": 2.0,
        },
        "node_groups": [{"name": group.name} for group in settings.node_groups],
        "drain": {"replacement_ready_max_s": 6},
        "autoscaler": _autoscaler_section(settings),
        "upgrade": {"nodegroup": settings.node_groups[0].name, "max_pending_s": 60},
        "timeouts": {
            "preflight_s": 15,
            "pod_ready_s": 60,
            "probe_s": 60,
            "drain_s": 120,
            "scale_up_s": max(60.0, timings.max_node_provision * 2),
            "scale_down_s": 60,
            "upgrade_s": 300,
            "weight_propagation_s": 15,
            "lease_s": 600,
        },
        # A killed run is dead (and sweepable) seconds after its last renewal.
        "runs": {"heartbeat_s": 9, "no_heartbeat_grace_s": 30, "sigterm_deadline_s": 20},
    }
    if "cutover" in facts:
        config["cutover"] = facts["cutover"]
    return config


def _autoscaler_section(settings: TwinSettings) -> dict[str, Any]:
    if settings.autoscaler == "karpenter":
        return {"kind": "karpenter", "namespace": "kube-system", "deployment": "karpenter"}
    return {"kind": "cluster-autoscaler", "status_max_age_s": 30}


def _call(service: str, operation: str) -> dict[str, str]:
    return {"service": service, "operation": operation}


def cutover_section(traffic: Any) -> dict[str, Any]:
    """The cutover the twin offers, short steps for a laptop: through the ALB's edge (ELBv2
    weights, judged per request), or through the weighted Route 53 name, which the load's
    clients resolve at the twin's Route 53 name servers (judged per resolution: more users,
    longer steps and a wider tolerance, so that a healthy step sees enough resolutions to
    pass; the first step is 25%, above the tolerance, so that a new cluster that gets
    nothing cannot pass it; docs/cutover-route53.md)."""
    step = {"users": 8, "spawn_rate": 8, "max_duration_s": 20, "min_requests": 300}
    if traffic.driver == "route53":
        return {
            "endpoint": traffic.record_url,
            "resolver": list(traffic.name_servers),
            "path": "/",
            "backend_header": "X-Served-By",
            "driver": {
                "kind": "route53",
                "hosted_zone_id": traffic.hosted_zone_id,
                "record_name": traffic.record_name,
                "set_identifiers": {"old": "old", "new": "new"},
                "name_servers": list(traffic.name_servers),
            },
            "steps": [
                {**step, "weight": weight, "users": 16, "spawn_rate": 16, "max_duration_s": 60}
                for weight in (25, 50, 100)
            ],
            "tolerance": 0.1,
        }
    return {
        "endpoint": traffic.edge_url,
        "path": "/",
        "backend_header": "X-Served-By",
        "driver": {
            "kind": "elbv2",
            "listener_arn": traffic.listener_arn,
            "target_groups": dict(traffic.target_groups),
        },
        "steps": [{"weight": weight, **step} for weight in (10, 25, 50, 100)],
        "tolerance": 0.05,
    }


def write_cluster_config(path: Path, config: dict[str, Any]) -> None:
    header = "# Written by the clustergate twin: what the suites expect of this twin.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
