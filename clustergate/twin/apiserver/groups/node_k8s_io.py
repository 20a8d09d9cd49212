"""node.k8s.io/v1: RuntimeClass (pkg/apis/node/validation)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType


def validate_runtime_class(obj: Obj) -> list[Cause]:
    if not obj.get("handler"):
        return [("handler", "FieldValueRequired", "Required value")]
    return []


def validate_runtime_class_update(old: Obj, new: Obj) -> list[Cause]:
    if old.get("handler") != new.get("handler"):
        return [
            (
                "handler",
                "FieldValueInvalid",
                'Invalid value: "' + str(new.get("handler")) + '": field is immutable',
            )
        ]
    return []


GROUP = ApiGroup(
    "node.k8s.io",
    (ResourceType("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),),
    validators={"runtimeclasses": validate_runtime_class},
    update_validators={"runtimeclasses": validate_runtime_class_update},
)
