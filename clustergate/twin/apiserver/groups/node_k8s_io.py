"""node.k8s.io/v1: RuntimeClass (pkg/apis/node/validation)."""

from __future__ import annotations

from clustergate.twin.apiserver.names import LABEL_RULE, is_label
from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType


def validate_runtime_class(obj: Obj) -> list[Cause]:
    """The handler must be a DNS label; a missing one is the empty string, not "Required"."""
    handler = obj.get("handler") or ""
    if not is_label(handler):
        return [("handler", "FieldValueInvalid", f'Invalid value: "{handler}": {LABEL_RULE}')]
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
