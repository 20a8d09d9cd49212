"""discovery.k8s.io/v1: EndpointSlice (pkg/apis/discovery/validation)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


def default_endpoint_slice(obj: Obj) -> None:
    """SetDefaults_EndpointPort, and the conditions struct every endpoint serializes."""
    for port in obj.get("ports") or []:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")
    for endpoint in obj.get("endpoints") or []:
        endpoint.setdefault("conditions", {})


def validate_endpoint_slice(obj: Obj) -> list[Cause]:
    kind = obj.get("addressType")
    if kind not in ADDRESS_TYPES:
        supported = ", ".join(f'"{t}"' for t in ADDRESS_TYPES)
        if not kind:
            return [("addressType", "FieldValueRequired", "Required value")]
        return [
            (
                "addressType",
                "FieldValueNotSupported",
                f'Unsupported value: "{kind}": supported values: {supported}',
            )
        ]
    causes: list[Cause] = []
    for index, endpoint in enumerate(obj.get("endpoints") or []):
        if not endpoint.get("addresses"):
            path = f"endpoints[{index}].addresses"
            causes.append(
                (path, "FieldValueRequired", "Required value: must contain at least 1 address")
            )
    return causes


GROUP = ApiGroup(
    "discovery.k8s.io",
    (ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),),
    defaults={"endpointslices": default_endpoint_slice},
    validators={"endpointslices": validate_endpoint_slice},
)
