"""scheduling.k8s.io/v1: PriorityClass with the two built-in system classes
(pkg/apis/scheduling: SystemPriorityClasses, validation; the Priority admission plugin is in
clustergate.twin.apiserver.priority)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType

#: HighestUserDefinablePriority: values above it are for the system classes only.
HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_CLASSES: tuple[tuple[str, int, str], ...] = (
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to "
        "another node if necessary.",
    ),
)
PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")


def default_priority_class(obj: Obj) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def validate_priority_class(obj: Obj) -> list[Cause]:
    name = obj["metadata"].get("name") or ""
    value = obj.get("value")
    causes: list[Cause] = []
    if name.startswith("system-"):
        known = next((v for n, v, _ in SYSTEM_CLASSES if n == name), None)
        if known is None:
            why = f"{name} is not a known system priority class"
        elif value != known:
            why = f"value of {name} PriorityClass must be {known}"
        if known is None or value != known:
            causes.append(
                (
                    "metadata.name",
                    "FieldValueForbidden",
                    "Forbidden: priority class names with 'system-' prefix are reserved for "
                    f"system use only. error: {why}",
                )
            )
    elif isinstance(value, int) and value > HIGHEST_USER_PRIORITY:
        causes.append(
            (
                "value",
                "FieldValueForbidden",
                f"Forbidden: maximum allowed value of a user defined priority is "
                f"{HIGHEST_USER_PRIORITY}",
            )
        )
    if not isinstance(value, int):
        causes.append(("value", "FieldValueRequired", "Required value"))
    policy = obj.get("preemptionPolicy")
    if policy not in PREEMPTION_POLICIES:
        supported = ", ".join(f'"{p}"' for p in PREEMPTION_POLICIES)
        causes.append(
            (
                "preemptionPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: {supported}',
            )
        )
    return causes


def validate_priority_class_update(old: Obj, new: Obj) -> list[Cause]:
    """ValidatePriorityClassUpdate, whose path for the value is spelled "Value"."""
    causes: list[Cause] = []
    if old.get("value") != new.get("value"):
        causes.append(
            ("Value", "FieldValueForbidden", "Forbidden: may not be changed in an update.")
        )
    policy = new.get("preemptionPolicy")
    if old.get("preemptionPolicy") != policy:
        causes.append(
            (
                "preemptionPolicy",
                "FieldValueInvalid",
                f'Invalid value: "{policy}": field is immutable',
            )
        )
    return causes


GROUP = ApiGroup(
    "scheduling.k8s.io",
    (ResourceType("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),),
    defaults={"priorityclasses": default_priority_class},
    validators={"priorityclasses": validate_priority_class},
    update_validators={"priorityclasses": validate_priority_class_update},
    bootstrap=tuple(
        (
            "priorityclasses",
            {"metadata": {"name": name}, "value": value, "description": description},
        )
        for name, value, description in SYSTEM_CLASSES
    ),
)
