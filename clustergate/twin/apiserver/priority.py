"""The Priority admission plugin (plugin/pkg/admission/priority): on pod create it resolves
spec.priorityClassName to the class's value and preemption policy, gives pods that name no
class the global default's (or 0), and refuses unknown classes and hand-set priorities."""

from __future__ import annotations

from clustergate.twin.apiserver import errors
from clustergate.twin.apiserver.resource_type import Obj, ResourceType
from clustergate.twin.apiserver.store import Store

CLASSES = "priorityclasses.scheduling.k8s.io"


def _global_default(store: Store) -> Obj | None:
    defaults = [pc for pc in store.scan(CLASSES) if pc.get("globalDefault")]
    # Several global defaults can exist after a race; the plugin takes the lowest value.
    return min(defaults, key=lambda pc: pc.get("value", 0), default=None)


def admit_priority(rt: ResourceType, store: Store, pod: Obj, asked_priority: object) -> None:
    """Fill ``pod``'s priority fields in place; ``asked_priority`` is spec.priority as sent
    (before defaulting), which must be absent or equal to the class's value."""
    spec = pod["spec"]
    name = pod["metadata"].get("name") or ""
    class_name = spec.get("priorityClassName") or ""
    if class_name:
        found = store.get(CLASSES, "", class_name)
        if found is None:
            raise errors.forbidden(
                rt.qualified,
                name,
                rt.group,
                rt.plural,
                f"no PriorityClass with name {class_name} was found",
            )
    else:
        found = _global_default(store)
        if found is not None:
            spec["priorityClassName"] = found["metadata"]["name"]
    value = found.get("value", 0) if found else 0
    if asked_priority is not None and asked_priority != value:
        raise errors.forbidden(
            rt.qualified,
            name,
            rt.group,
            rt.plural,
            f"the integer value of priority ({asked_priority}) must not be provided in pod "
            f"spec; priority admission controller computed {value} from the given "
            "PriorityClass name",
        )
    spec["priority"] = value
    spec["preemptionPolicy"] = (found or {}).get("preemptionPolicy") or spec.get(
        "preemptionPolicy", "PreemptLowerPriority"
    )
