"""The API groups served beyond the twin's first ones (core, apps, batch, policy,
coordination, events and the reviews, which resources.py lists; RBAC keeps its place in that
list but has its room here for its bootstrap policy): one module per group,
named as upstream names the group, each defining ``GROUP``.

A new group adds its module and one line to :data:`GROUPS`; discovery, OpenAPI, the REST
layer, defaulting and validation pick it up from there.
"""

from __future__ import annotations

from clustergate.twin.apiserver.groups import (
    admissionregistration_k8s_io,
    apiextensions_k8s_io,
    autoscaling,
    certificates_k8s_io,
    discovery_k8s_io,
    flowcontrol_apiserver_k8s_io,
    networking_k8s_io,
    node_k8s_io,
    scheduling_k8s_io,
    storage_k8s_io,
)
from clustergate.twin.apiserver.resource_type import ApiGroup

#: In the order the real API server lists them under /apis.
GROUPS: tuple[ApiGroup, ...] = (
    autoscaling.GROUP,
    certificates_k8s_io.GROUP,
    networking_k8s_io.GROUP,
    storage_k8s_io.GROUP,
    admissionregistration_k8s_io.GROUP,
    apiextensions_k8s_io.GROUP,
    scheduling_k8s_io.GROUP,
    node_k8s_io.GROUP,
    discovery_k8s_io.GROUP,
    flowcontrol_apiserver_k8s_io.GROUP,
)
