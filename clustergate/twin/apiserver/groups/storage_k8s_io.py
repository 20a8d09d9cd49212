"""storage.k8s.io/v1: StorageClass, CSIDriver, CSINode, VolumeAttachment and
CSIStorageCapacity (pkg/apis/storage/v1/defaults.go, pkg/apis/storage/validation), with the
``gp2`` StorageClass every EKS cluster is created with (not marked default since 1.30)."""

from __future__ import annotations

from clustergate.twin.apiserver.resource_type import ApiGroup, Cause, Obj, ResourceType, status

_IMMUTABLE_CLASS_FIELDS = ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode")
GP2 = {
    "metadata": {"name": "gp2"},
    "provisioner": "kubernetes.io/aws-ebs",
    "parameters": {"fsType": "ext4", "type": "gp2"},
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer",
}


def default_storage_class(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def validate_storage_class(obj: Obj) -> list[Cause]:
    if not obj.get("provisioner"):
        return [("provisioner", "FieldValueRequired", "Required value")]
    return []


def validate_storage_class_update(old: Obj, new: Obj) -> list[Cause]:
    return [
        (key, "FieldValueForbidden", f"Forbidden: updates to {key} are forbidden.")
        for key in _IMMUTABLE_CLASS_FIELDS
        if old.get(key) != new.get(key)
    ]


def default_csi_driver(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("attachRequired", True)
    spec.setdefault("podInfoOnMount", False)
    spec.setdefault("storageCapacity", False)
    spec.setdefault("fsGroupPolicy", "ReadWriteOnceWithFSType")
    spec.setdefault("requiresRepublish", False)
    spec.setdefault("seLinuxMount", False)
    spec.setdefault("volumeLifecycleModes", ["Persistent"])


def validate_volume_attachment(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    return [
        (f"spec.{key}", "FieldValueRequired", "Required value")
        for key in ("attacher", "nodeName")
        if not spec.get(key)
    ]


def validate_csi_node(obj: Obj) -> list[Cause]:
    if "drivers" not in (obj.get("spec") or {}):
        return [("spec.drivers", "FieldValueRequired", "Required value")]
    return []


GROUP = ApiGroup(
    "storage.k8s.io",
    (
        ResourceType("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
        ResourceType("storage.k8s.io", "v1", "csinodes", "CSINode", False),
        ResourceType("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity", True),
        ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
        ResourceType(
            "storage.k8s.io",
            "v1",
            "volumeattachments",
            "VolumeAttachment",
            False,
            subresources=(status("VolumeAttachment"),),
        ),
    ),
    defaults={"storageclasses": default_storage_class, "csidrivers": default_csi_driver},
    validators={
        "storageclasses": validate_storage_class,
        "volumeattachments": validate_volume_attachment,
        "csinodes": validate_csi_node,
    },
    update_validators={"storageclasses": validate_storage_class_update},
    bootstrap=(("storageclasses", GP2),),
)
