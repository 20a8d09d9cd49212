"""networking.k8s.io/v1: Ingress, IngressClass and NetworkPolicy
(pkg/apis/networking/v1/defaults.go and pkg/apis/networking/validation)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType, status

_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


def default_network_policy(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
        for port in rule.get("ports") or []:
            port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def validate_ingress(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    if not spec.get("defaultBackend") and not rules:
        # The bad value is the rules slice, printed as Go prints a nil or an empty one.
        value = "[]networking.IngressRule" + ("{}" if "rules" in spec else "(nil)")
        return [
            (
                "spec",
                "FieldValueInvalid",
                f"Invalid value: {value}: either `defaultBackend` or `rules` must be specified",
            )
        ]
    causes: list[Cause] = []
    for r, rule in enumerate(rules):
        for p, path in enumerate((rule.get("http") or {}).get("paths") or []):
            where = f"spec.rules[{r}].http.paths[{p}]"
            kind = path.get("pathType")
            if not kind:
                causes.append(
                    (
                        f"{where}.pathType",
                        "FieldValueRequired",
                        "Required value: pathType must be specified",
                    )
                )
            elif kind not in _PATH_TYPES:
                supported = ", ".join(f'"{t}"' for t in _PATH_TYPES)
                causes.append(
                    (
                        f"{where}.pathType",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{kind}": supported values: {supported}',
                    )
                )
            if not path.get("backend"):
                causes.append((f"{where}.backend", "FieldValueRequired", "Required value"))
    return causes


def validate_ingress_class(obj: Obj) -> list[Cause]:
    if not (obj.get("spec") or {}).get("controller"):
        return [("spec.controller", "FieldValueRequired", "Required value")]
    return []


GROUP = ApiGroup(
    "networking.k8s.io",
    (
        ResourceType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
        ResourceType(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            True,
            ("ing",),
            subresources=(status("Ingress"),),
            tracks_generation=True,
            invalid_group="extensions",
        ),
        ResourceType(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            True,
            ("netpol",),
            tracks_generation=True,
        ),
    ),
    defaults={"networkpolicies": default_network_policy},
    validators={"ingresses": validate_ingress, "ingressclasses": validate_ingress_class},
)
