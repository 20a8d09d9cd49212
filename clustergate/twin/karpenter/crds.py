"""Karpenter v1's CRDs as the twin installs them: karpenter.sh NodePool and NodeClaim,
karpenter.k8s.aws EC2NodeClass.

Written as data after the published CRDs (karpenter-provider-aws ``pkg/apis/crds``, v1.0):
the same names, short names, printer columns, defaults and structural schemas for the fields
Karpenter v1 defines and the twin's controller reads. CEL rules (``x-kubernetes-validations``)
are left out: the twin's API server does not evaluate them on custom resources.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

CORE_GROUP = "karpenter.sh"
AWS_GROUP = "karpenter.k8s.aws"
VERSION = "v1"

_STRING: Obj = {"type": "string"}
_QUANTITY: Obj = {
    "x-kubernetes-int-or-string": True,
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}
_DURATION_OR_NEVER: Obj = {"type": "string", "pattern": r"^(([0-9]+(s|m|h))+|Never)$"}
_STRING_MAP: Obj = {"type": "object", "additionalProperties": _STRING}
_RESOURCE_MAP: Obj = {"type": "object", "additionalProperties": _QUANTITY}


def _obj(properties: Obj, required: tuple[str, ...] = (), **extra: Any) -> Obj:
    schema: Obj = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _array(items: Obj, **extra: Any) -> Obj:
    return {"type": "array", "items": items, **extra}


_CONDITION = _obj(
    {
        "type": {"type": "string", "maxLength": 316},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "observedGeneration": {"type": "integer", "minimum": 0},
        "lastTransitionTime": {"type": "string"},
        "reason": {"type": "string", "maxLength": 1024},
        "message": {"type": "string", "maxLength": 32768},
    },
    ("lastTransitionTime", "message", "reason", "status", "type"),
)
_CONDITIONS = _array(_CONDITION)
_NODE_CLASS_REF = _obj(
    {
        "group": {"type": "string", "pattern": r"^[^/]*$"},
        "kind": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
    },
    ("group", "kind", "name"),
)
_REQUIREMENT = _obj(
    {
        "key": {"type": "string", "maxLength": 316},
        "operator": {
            "type": "string",
            "enum": ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"],
        },
        "values": _array(_STRING, maxItems=500),
        "minValues": {"type": "integer", "minimum": 1, "maximum": 50},
    },
    ("key", "operator"),
)
_TAINT = _obj(
    {
        "key": {"type": "string", "minLength": 1},
        "value": _STRING,
        "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "timeAdded": _STRING,
    },
    ("effect", "key"),
)
_CLAIM_SPEC_FIELDS: Obj = {
    "nodeClassRef": _NODE_CLASS_REF,
    "requirements": _array(_REQUIREMENT, maxItems=100),
    "taints": _array(_TAINT),
    "startupTaints": _array(_TAINT),
    "expireAfter": {**_DURATION_OR_NEVER, "default": "720h"},
    "terminationGracePeriod": {"type": "string", "pattern": r"^([0-9]+(s|m|h))+$"},
}
_BUDGET = _obj(
    {
        "nodes": {"type": "string", "default": "10%", "pattern": r"^((100|[0-9]{1,2})%|[0-9]+)$"},
        "schedule": _STRING,
        "duration": {"type": "string", "pattern": r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"},
        "reasons": _array({"type": "string", "enum": ["Underutilized", "Empty", "Drifted"]}),
    },
    ("nodes",),
)
_SELECTOR_TAGS: Obj = {"type": "object", "additionalProperties": _STRING, "maxProperties": 20}


def _columns(*columns: tuple[str, str, str, int]) -> list[Obj]:
    return [
        {"name": name, "type": kind, "jsonPath": path, **({"priority": p} if p else {})}
        for name, kind, path, p in columns
    ]


def _ready(path: str = '.status.conditions[?(@.type=="Ready")].status') -> tuple:
    return ("Ready", "string", path, 0)


_AGE = ("Age", "date", ".metadata.creationTimestamp", 0)


def _crd(group: str, kind: str, plural: str, short: list[str], schema: Obj, columns: list[Obj]):
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.3"},
        },
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["karpenter"],
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _root(spec: Obj, status: Obj, required: tuple[str, ...] = ("spec",)) -> Obj:
    return _obj(
        {
            "apiVersion": _STRING,
            "kind": _STRING,
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        required,
    )


NODEPOOL = _crd(
    CORE_GROUP,
    "NodePool",
    "nodepools",
    [],
    _root(
        _obj(
            {
                "template": _obj(
                    {
                        "metadata": _obj({"labels": _STRING_MAP, "annotations": _STRING_MAP}),
                        "spec": _obj(_CLAIM_SPEC_FIELDS, ("nodeClassRef", "requirements")),
                    },
                    ("spec",),
                ),
                "disruption": _obj(
                    {
                        "consolidateAfter": {
                            "type": "string",
                            "pattern": r"^(([0-9]+(s|m|h))+|Never)$",
                        },
                        "consolidationPolicy": {
                            "type": "string",
                            "default": "WhenEmptyOrUnderutilized",
                            "enum": ["WhenEmpty", "WhenEmptyOrUnderutilized"],
                        },
                        "budgets": _array(_BUDGET, maxItems=50, default=[{"nodes": "10%"}]),
                    },
                    ("consolidateAfter",),
                    default={"consolidateAfter": "0s"},
                ),
                "limits": _RESOURCE_MAP,
                "weight": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 100},
            },
            ("template",),
        ),
        _obj(
            {
                "resources": _RESOURCE_MAP,
                "nodeClassObservedGeneration": {"type": "integer", "format": "int64"},
                "conditions": _CONDITIONS,
            }
        ),
    ),
    _columns(
        ("NodeClass", "string", ".spec.template.spec.nodeClassRef.name", 0),
        ("Nodes", "string", ".status.resources.nodes", 0),
        _ready(),
        _AGE,
        ("Weight", "integer", ".spec.weight", 1),
        ("CPU", "string", ".status.resources.cpu", 1),
        ("Memory", "string", ".status.resources.memory", 1),
    ),
)

NODECLAIM = _crd(
    CORE_GROUP,
    "NodeClaim",
    "nodeclaims",
    [],
    _root(
        _obj(
            {
                **_CLAIM_SPEC_FIELDS,
                "resources": _obj({"requests": _RESOURCE_MAP}),
            },
            ("nodeClassRef", "requirements"),
        ),
        _obj(
            {
                "nodeName": _STRING,
                "providerID": _STRING,
                "imageID": _STRING,
                "capacity": _RESOURCE_MAP,
                "allocatable": _RESOURCE_MAP,
                "lastPodEventTime": _STRING,
                "conditions": _CONDITIONS,
            }
        ),
    ),
    _columns(
        ("Type", "string", ".metadata.labels.node\\.kubernetes\\.io/instance-type", 0),
        ("Capacity", "string", ".metadata.labels.karpenter\\.sh/capacity-type", 0),
        ("Zone", "string", ".metadata.labels.topology\\.kubernetes\\.io/zone", 0),
        ("Node", "string", ".status.nodeName", 0),
        _ready(),
        _AGE,
        ("ImageID", "string", ".status.imageID", 1),
        ("ID", "string", ".status.providerID", 1),
        ("NodePool", "string", ".metadata.labels.karpenter\\.sh/nodepool", 1),
        ("NodeClass", "string", ".spec.nodeClassRef.name", 1),
    ),
)

_SUBNET_TERM = _obj(
    {"tags": _SELECTOR_TAGS, "id": {"type": "string", "pattern": "subnet-[0-9a-z]+"}}
)
_GROUP_TERM = _obj(
    {
        "tags": _SELECTOR_TAGS,
        "id": {"type": "string", "pattern": "sg-[0-9a-z]+"},
        "name": _STRING,
    }
)
_AMI_TERM = _obj(
    {
        "alias": {"type": "string", "maxLength": 30},
        "tags": _SELECTOR_TAGS,
        "id": {"type": "string", "pattern": "ami-[0-9a-z]+"},
        "name": _STRING,
        "owner": _STRING,
    }
)

EC2NODECLASS = _crd(
    AWS_GROUP,
    "EC2NodeClass",
    "ec2nodeclasses",
    ["ec2nc", "ec2ncs"],
    _root(
        _obj(
            {
                "subnetSelectorTerms": _array(_SUBNET_TERM, minItems=1, maxItems=30),
                "securityGroupSelectorTerms": _array(_GROUP_TERM, minItems=1, maxItems=30),
                "amiSelectorTerms": _array(_AMI_TERM, minItems=1, maxItems=30),
                "amiFamily": {
                    "type": "string",
                    "enum": [
                        "AL2",
                        "AL2023",
                        "Bottlerocket",
                        "Custom",
                        "Windows2019",
                        "Windows2022",
                    ],
                },
                "role": {"type": "string", "maxLength": 64},
                "instanceProfile": _STRING,
                "tags": _STRING_MAP,
                "userData": _STRING,
                "detailedMonitoring": {"type": "boolean"},
                "associatePublicIPAddress": {"type": "boolean"},
                "kubelet": _obj(
                    {
                        "maxPods": {"type": "integer", "format": "int32", "minimum": 0},
                        "podsPerCore": {"type": "integer", "format": "int32", "minimum": 0},
                        "systemReserved": _RESOURCE_MAP,
                        "kubeReserved": _RESOURCE_MAP,
                        "evictionHard": _STRING_MAP,
                        "clusterDNS": _array(_STRING),
                    }
                ),
                "metadataOptions": _obj(
                    {
                        "httpEndpoint": {
                            "type": "string",
                            "default": "enabled",
                            "enum": ["enabled", "disabled"],
                        },
                        "httpProtocolIPv6": {
                            "type": "string",
                            "default": "disabled",
                            "enum": ["enabled", "disabled"],
                        },
                        "httpPutResponseHopLimit": {
                            "type": "integer",
                            "format": "int64",
                            "default": 1,
                            "minimum": 1,
                            "maximum": 64,
                        },
                        "httpTokens": {
                            "type": "string",
                            "default": "required",
                            "enum": ["required", "optional"],
                        },
                    },
                    default={
                        "httpEndpoint": "enabled",
                        "httpProtocolIPv6": "disabled",
                        "httpPutResponseHopLimit": 1,
                        "httpTokens": "required",
                    },
                ),
                "blockDeviceMappings": _array(
                    _obj(
                        {
                            "deviceName": _STRING,
                            "rootVolume": {"type": "boolean"},
                            "ebs": _obj(
                                {
                                    "volumeSize": _QUANTITY,
                                    "volumeType": _STRING,
                                    "encrypted": {"type": "boolean"},
                                    "deleteOnTermination": {"type": "boolean"},
                                }
                            ),
                        }
                    ),
                    maxItems=50,
                ),
            },
            ("amiSelectorTerms", "securityGroupSelectorTerms", "subnetSelectorTerms"),
        ),
        _obj(
            {
                "subnets": _array(_obj({"id": _STRING, "zone": _STRING, "zoneID": _STRING})),
                "securityGroups": _array(_obj({"id": _STRING, "name": _STRING})),
                "amis": _array(
                    _obj(
                        {
                            "id": _STRING,
                            "name": _STRING,
                            "deprecated": {"type": "boolean"},
                            "requirements": _array(_REQUIREMENT),
                        }
                    )
                ),
                "instanceProfile": _STRING,
                "conditions": _CONDITIONS,
            }
        ),
    ),
    _columns(_ready(), _AGE, ("Role", "string", ".spec.role", 1)),
)

CRDS = (NODEPOOL, NODECLAIM, EC2NODECLASS)
