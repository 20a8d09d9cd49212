"""autoscaling/v2: HorizontalPodAutoscaler (pkg/apis/autoscaling/v2/defaults.go and
pkg/apis/autoscaling/validation)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType, status

#: The CPU target an HPA without metrics gets (DefaultCPUUtilization).
DEFAULT_CPU_UTILIZATION = 80
_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
_SCALE_DOWN = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


def _default_rules(rules: Obj, defaults: Obj) -> None:
    for key, value in defaults.items():
        if key == "policies":
            rules.setdefault(key, [dict(policy) for policy in value])
        else:
            rules.setdefault(key, value)


def default_hpa(obj: Obj) -> None:
    """Behavior's rules are filled in only where a behavior is given
    (SetDefaults_HorizontalPodAutoscalerBehavior): an HPA made without one stores none."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": DEFAULT_CPU_UTILIZATION,
                    },
                },
            }
        ]
    behavior = spec.get("behavior")
    if behavior is not None:
        _default_rules(behavior.setdefault("scaleUp", {}), _SCALE_UP)
        _default_rules(behavior.setdefault("scaleDown", {}), _SCALE_DOWN)


def validate_hpa(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    minimum, maximum = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
    if isinstance(minimum, int) and minimum < 1:
        causes.append(
            (
                "spec.minReplicas",
                "FieldValueInvalid",
                f"Invalid value: {minimum}: must be greater than or equal to 1",
            )
        )
    if not isinstance(maximum, int) or maximum < 1:
        causes.append(
            (
                "spec.maxReplicas",
                "FieldValueInvalid",
                f"Invalid value: {maximum}: must be greater than 0",
            )
        )
    elif isinstance(minimum, int) and maximum < minimum:
        causes.append(
            (
                "spec.maxReplicas",
                "FieldValueInvalid",
                f"Invalid value: {maximum}: must be greater than or equal to `minReplicas`",
            )
        )
    target = spec.get("scaleTargetRef") or {}
    for key in ("kind", "name"):
        if not target.get(key):
            causes.append((f"spec.scaleTargetRef.{key}", "FieldValueRequired", "Required value"))
    return causes


GROUP = ApiGroup(
    "autoscaling",
    (
        ResourceType(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            True,
            ("hpa",),
            subresources=(status("HorizontalPodAutoscaler"),),
            categories=("all",),
        ),
    ),
    defaults={"horizontalpodautoscalers": default_hpa},
    validators={"horizontalpodautoscalers": validate_hpa},
)
