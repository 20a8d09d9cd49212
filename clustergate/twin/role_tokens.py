"""``python -m clustergate.twin kubeconfig --as-role ROLE``: a kubeconfig for the ServiceAccount
that a ClusterRoleBinding binds to ROLE (deploy/rbac.yaml, applied with kubectl), with a
token from its TokenRequest, as ``kubectl create token`` would issue it."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, config

from clustergate.twin import outputs


class NoBindingError(Exception):
    pass


def bound_service_account(rbac: client.RbacAuthorizationV1Api, role: str) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount bound to ClusterRole ``role``; the one named
    like the role when several are."""
    accounts = [
        (subject.namespace, subject.name)
        for binding in rbac.list_cluster_role_binding().items
        if binding.role_ref.kind == "ClusterRole" and binding.role_ref.name == role
        for subject in binding.subjects or []
        if subject.kind == "ServiceAccount"
    ]
    if not accounts:
        raise NoBindingError(
            f"no ClusterRoleBinding binds ClusterRole {role} to a ServiceAccount: apply "
            "deploy/rbac.yaml first (kubectl --kubeconfig STATE_DIR/kubeconfig apply -f "
            "deploy/rbac.yaml)"
        )
    return next((account for account in accounts if account[1] == role), accounts[0])


def write_role_kubeconfig(state_dir: Path, role: str, output: Path, seconds: int) -> str:
    """Write ``output``; return the ServiceAccount it authenticates as."""
    admin = config.new_client_from_config(str(state_dir / "kubeconfig"), context=outputs.CONTEXT)
    with admin:
        namespace, name = bound_service_account(client.RbacAuthorizationV1Api(admin), role)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        token = client.CoreV1Api(admin).create_namespaced_service_account_token(
            name, namespace, request
        )
    source = yaml.safe_load((state_dir / "kubeconfig").read_text())
    cluster = source["clusters"][0]["cluster"]
    outputs.write_kubeconfig(output, cluster["server"], cluster["certificate-authority"], {})
    kubeconfig = yaml.safe_load(output.read_text())
    kubeconfig["users"] = [{"name": role, "user": {"token": token.status.token}}]
    kubeconfig["contexts"] = [{"name": role, "context": {"cluster": outputs.CONTEXT, "user": role}}]
    kubeconfig["current-context"] = role
    output.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    return f"system:serviceaccount:{namespace}:{name}"
