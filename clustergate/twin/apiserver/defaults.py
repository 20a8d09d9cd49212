"""Defaulting and validation the real API server applies on create and update, as far as the
twin's clients rely on it (pkg/apis/*/v1/defaults.go, pkg/apis/*/validation)."""

from __future__ import annotations

from typing import Any

from clustergate.twin.apiserver import structural_schema
from clustergate.twin.apiserver.names import LABEL_RULE, SUBDOMAIN_RULE, is_label, is_subdomain
from clustergate.twin.apiserver.resources import ResourceType, group_of

Obj = dict[str, Any]
Cause = tuple[str, str, str]

_LABEL_NAMED = frozenset({"namespaces", "services"})


def _default_container(container: Obj) -> None:
    image = container.get("image") or ""
    tag = image.rsplit("/", 1)[-1]
    untagged_or_latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if untagged_or_latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(container)


def qos_class(spec: Obj) -> str:
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def default_pod(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for toleration in _DEFAULT_TOLERATIONS:
        if not any(
            t.get("key") == toleration["key"] and t.get("effect") in (None, "", "NoExecute")
            for t in tolerations
        ):
            tolerations.append(dict(toleration))
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status["qosClass"] = qos_class(spec)


def _default_template(workload: Obj) -> None:
    template = workload.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(obj)


def default_replicaset(obj: Obj) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(obj)


def default_daemonset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(obj)


def default_job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", None)
    if not spec.get("manualSelector"):
        uid = obj["metadata"]["uid"]
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                "controller-uid": uid,
                "job-name": obj["metadata"]["name"],
            }
        )
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector")
    _default_template(obj)


def default_namespace(obj: Obj) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}


def default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


DEFAULTERS = {
    "pods": default_pod,
    "deployments.apps": default_deployment,
    "replicasets.apps": default_replicaset,
    "daemonsets.apps": default_daemonset,
    "jobs.batch": default_job,
    "namespaces": default_namespace,
    "services": default_service,
    "secrets": default_secret,
}


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    if rt.schema is not None:
        pruned = structural_schema.prune(obj, rt.schema)
        obj.clear()
        obj.update(pruned)
        return
    group = group_of(rt)
    defaulter = group.defaults.get(rt.plural) if group else DEFAULTERS.get(rt.qualified)
    if defaulter is not None:
        defaulter(obj)


# ---- validation


def _name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if not name:
        return [
            (
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required",
            )
        ]
    if rt.plural in _LABEL_NAMED:
        if not is_label(name):
            return [
                ("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {LABEL_RULE}')
            ]
    elif rt.plural not in ("rolebindings", "roles", "clusterroles", "clusterrolebindings") and (
        not is_subdomain(name)
    ):
        return [
            ("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {SUBDOMAIN_RULE}')
        ]
    return []


def _pod_spec_causes(spec: Obj, prefix: str) -> list[Cause]:
    containers = spec.get("containers") or []
    if not containers:
        return [(f"{prefix}.containers", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            for attr in ("name", "image"):
                if not container.get(attr):
                    path = f"{prefix}.{field}[{index}].{attr}"
                    causes.append((path, "FieldValueRequired", "Required value"))
    return causes


def _selector_causes(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        return [("spec.selector", "FieldValueRequired", "Required value")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return [
            (
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {labels!r}: `selector` does not match template `labels`",
            )
        ]
    return []


POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only "
    "additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


#: Pod spec fields an update may change (ValidatePodUpdate); containers' images too.
_POD_MUTABLE = frozenset({"activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations"})
_CONTAINER_LISTS = ("containers", "initContainers")


def _without_images(containers: list[Obj]) -> list[Obj]:
    return [{k: v for k, v in container.items() if k != "image"} for container in containers]


def _pod_spec_changed_beyond_mutable(before: Obj, after: Obj) -> bool:
    """Compared in place: pods are updated often, and most updates leave the spec alone."""
    if before == after:
        return False
    fixed = (set(before) | set(after)) - _POD_MUTABLE - set(_CONTAINER_LISTS)
    if any(before.get(field) != after.get(field) for field in fixed):
        return True
    return any(
        _without_images(before.get(kind) or []) != _without_images(after.get(kind) or [])
        for kind in _CONTAINER_LISTS
    )


def validate_update(rt: ResourceType, current: Obj, new: Obj) -> list[Cause]:
    """What an update may not change that a create may set."""
    group = group_of(rt)
    if group is not None:
        update_validator = group.update_validators.get(rt.plural)
        return update_validator(current, new) if update_validator else []
    if rt.qualified != "pods":
        return []
    if _pod_spec_changed_beyond_mutable(current.get("spec") or {}, new.get("spec") or {}):
        return [("spec", "FieldValueForbidden", POD_UPDATE_FORBIDDEN)]
    return []


def validate(rt: ResourceType, obj: Obj) -> list[Cause]:
    causes = _name_causes(rt, obj["metadata"].get("name") or "")
    if rt.schema is not None:
        return causes + structural_schema.validate(obj, rt.schema)
    group = group_of(rt)
    if group is not None:
        validator = group.validators.get(rt.plural)
        causes += validator(obj) if validator else []
        return causes
    spec = obj.get("spec") or {}
    if rt.qualified == "pods":
        causes += _pod_spec_causes(spec, "spec")
    elif rt.qualified in ("deployments.apps", "replicasets.apps", "daemonsets.apps"):
        causes += _selector_causes(obj)
        causes += _pod_spec_causes(
            (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
        )
        replicas = spec.get("replicas", 0)
        if isinstance(replicas, int) and replicas < 0:
            causes.append(
                (
                    "spec.replicas",
                    "FieldValueInvalid",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            )
    elif rt.qualified == "jobs.batch":
        template_spec = (spec.get("template") or {}).get("spec") or {}
        causes += _pod_spec_causes(template_spec, "spec.template.spec")
        policy = template_spec.get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(
                (
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )
    return causes
