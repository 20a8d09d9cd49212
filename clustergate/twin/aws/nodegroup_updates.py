"""EKS node-group version updates, which moto lacks.

``UpdateNodegroupVersion`` validates the request as EKS does, records an update (``InProgress``)
and runs a :class:`~clustergate.twin.aws.nodegroup_rollout.NodegroupRollout` in the background;
``DescribeUpdate`` and ``ListUpdates`` report it (``Successful``, ``Failed`` with its errors, or
``Cancelled`` when the twin stops first). While it runs the node group is ``UPDATING`` and a
second update is refused with ``ResourceInUseException``; once it succeeds, DescribeNodegroup
shows the new ``version``, ``releaseVersion`` and launch template version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.exceptions import ClientError

from clustergate.twin.aws.fleet import Fleet
from clustergate.twin.aws.images import ImageCatalog
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.nodegroup_rollout import NodegroupRollout, RolloutTarget, UpdateFailure
from clustergate.twin.aws.provision import GroupPlan
from clustergate.twin.aws.releases import (
    is_minor,
    is_release,
    kubernetes_minor,
    minor_key,
    release_version,
)
from clustergate.twin.aws.rest_errors import RestJsonError
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

ClientFactory = Callable[[], KubeClient]
_UPDATE_VERSION = re.compile(
    r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<ng>[^/]+)/update-version"
)
_UPDATE = re.compile(r"/clusters/(?P<cluster>[^/]+)/updates/(?P<id>[^/]+)")
_UPDATES = re.compile(r"/clusters/(?P<cluster>[^/]+)/updates")
_NODEGROUP = re.compile(r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<ng>[^/]+)")
DEFAULT_MAX_RESULTS = 50


@dataclass
class UpdateRecord:
    id: str
    cluster: str
    nodegroup: str
    params: list[dict[str, str]]
    created_at: float
    status: str = "InProgress"
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "type": "VersionUpdate",
            "params": self.params,
            "createdAt": self.created_at,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class _Version:
    """What DescribeNodegroup reports once an update succeeded."""

    version: str
    release_version: str
    launch_template_version: str


class NodegroupUpdates:
    def __init__(
        self,
        settings: TwinSettings,
        moto: MotoClients,
        fleet: Fleet,
        images: ImageCatalog,
        groups: tuple[GroupPlan, ...],
    ) -> None:
        self._settings = settings
        self._moto = moto
        self._fleet = fleet
        self._images = images
        self._groups = {group.shape.name: group for group in groups}
        #: Builds the admin Kubernetes client an update drains nodes with.
        self.client_factory: ClientFactory | None = None
        self._records: dict[str, UpdateRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._versions: dict[str, _Version] = {}

    async def handle(self, request: web.Request, body: bytes) -> web.Response | None:
        """Answer the update operations; None for every other EKS request (forward it)."""
        path = request.path
        try:
            if request.method == "POST" and (match := _UPDATE_VERSION.fullmatch(path)):
                document = json.loads(body or b"{}")
                record = await self._start(
                    unquote(match["cluster"]), unquote(match["ng"]), document
                )
                return web.json_response({"update": record.to_json()})
            if request.method == "GET" and (match := _UPDATE.fullmatch(path)):
                record = self._describe(
                    unquote(match["cluster"]),
                    unquote(match["id"]),
                    request.query.get("nodegroupName"),
                )
                return web.json_response({"update": record.to_json()})
            if request.method == "GET" and (match := _UPDATES.fullmatch(path)):
                return web.json_response(self._list(unquote(match["cluster"]), request.query))
        except RestJsonError as error:
            log.info("%s %s refused: %s", request.method, path, error)
            return error.to_response()
        return None

    def rewrite_nodegroup(self, request: web.Request, response: web.Response) -> web.Response:
        """DescribeNodegroup as EKS shows it: UPDATING during an update, the new version after."""
        match = _NODEGROUP.fullmatch(request.path)
        if request.method != "GET" or match is None or response.status != 200:
            return response
        assert isinstance(response.body, bytes)
        document = json.loads(response.body)
        nodegroup = document.get("nodegroup") or {}
        name = nodegroup.get("nodegroupName", "")
        version = self._versions.get(name)
        if version is not None:
            nodegroup["version"] = version.version
            nodegroup["releaseVersion"] = version.release_version
            nodegroup.setdefault("launchTemplate", {})["version"] = version.launch_template_version
        if self._in_progress(name) is not None:
            nodegroup["status"] = "UPDATING"
        response.body = json.dumps(document).encode()
        return response

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _in_progress(self, nodegroup: str) -> UpdateRecord | None:
        return next(
            (
                r
                for r in self._records.values()
                if r.nodegroup == nodegroup and r.status == "InProgress"
            ),
            None,
        )

    def _check_cluster(self, cluster: str) -> None:
        if cluster != self._settings.network.cluster_name:
            raise RestJsonError(
                404,
                "ResourceNotFoundException",
                f"No cluster found for name: {cluster}.",
                clusterName=cluster,
            )

    async def _start(self, cluster: str, name: str, request: dict[str, Any]) -> UpdateRecord:
        self._check_cluster(cluster)
        try:
            nodegroup = (
                await asyncio.to_thread(
                    self._moto.eks.describe_nodegroup, clusterName=cluster, nodegroupName=name
                )
            )["nodegroup"]
        except ClientError as error:
            details = error.response["Error"]
            raise RestJsonError(
                error.response["ResponseMetadata"]["HTTPStatusCode"],
                details["Code"],
                details.get("Message", ""),
                clusterName=cluster,
                nodegroupName=name,
            ) from None
        plan = self._groups.get(name)
        if plan is None:
            raise RestJsonError(
                400,
                "InvalidRequestException",
                f"Node group {name} is not managed by this cluster's node-group updater.",
                clusterName=cluster,
                nodegroupName=name,
            )
        running = self._in_progress(name)
        if running is not None:
            raise RestJsonError(
                409,
                "ResourceInUseException",
                f"Nodegroup {name} is currently being updated (update {running.id}).",
                clusterName=cluster,
                nodegroupName=name,
            )
        if self.client_factory is None:
            raise RestJsonError(
                500,
                "ServerException",
                "the twin's AWS side has no Kubernetes client to drain nodes with "
                "(AwsSide.attach_kubernetes was not called)",
            )
        target = self._target(cluster, name, nodegroup, request)
        params = [
            {"type": "Version", "value": target.kubernetes_version},
            {"type": "ReleaseVersion", "value": target.release_version},
        ]
        record = UpdateRecord(str(uuid.uuid4()), cluster, name, params, time.time())
        self._records[record.id] = record
        client = self.client_factory()
        rollout = NodegroupRollout(
            self._settings, self._moto, self._fleet, self._images, plan, client, target
        )
        self._tasks[record.id] = asyncio.create_task(
            self._run(record, rollout, client, target), name=f"nodegroup update {record.id}"
        )
        log.info("update %s of node group %s to %s started", record.id, name, params)
        return record

    def _target(
        self, cluster: str, name: str, nodegroup: dict[str, Any], request: dict[str, Any]
    ) -> RolloutTarget:
        def invalid(message: str) -> RestJsonError:
            return RestJsonError(
                400, "InvalidParameterException", message, clusterName=cluster, nodegroupName=name
            )

        if request.get("launchTemplate"):
            raise invalid("The twin updates node groups by version or releaseVersion only.")
        cluster_version = self._settings.network.kubernetes_version
        current = self._versions.get(name)
        current_version = current.version if current else nodegroup["version"]
        version = request.get("version")
        release = request.get("releaseVersion")
        if version is not None and not is_minor(str(version)):
            raise invalid(f"Invalid Kubernetes version {version}.")
        if release is not None and not is_release(str(release)):
            raise invalid(f"Requested release version {release} is not valid.")
        version = version or (kubernetes_minor(release) if release else cluster_version)
        release = release or release_version(version)
        if kubernetes_minor(release) != version:
            raise invalid(
                f"Requested release version {release} is not valid for kubernetes version "
                f"{version}."
            )
        if minor_key(version) > minor_key(cluster_version):
            raise invalid(
                f"Requested Nodegroup Kubernetes version {version} is newer than the cluster "
                f"version {cluster_version}."
            )
        if minor_key(version) < minor_key(current_version):
            raise invalid(
                f"Requested Nodegroup Kubernetes version {version} is older than the node "
                f"group's version {current_version}."
            )
        config = nodegroup.get("updateConfig") or {}
        return RolloutTarget(
            kubernetes_version=version,
            release_version=release,
            force=bool(request.get("force", False)),
            max_unavailable=config.get("maxUnavailable"),
            max_unavailable_percentage=config.get("maxUnavailablePercentage"),
        )

    async def _run(
        self,
        record: UpdateRecord,
        rollout: NodegroupRollout,
        client: KubeClient,
        target: RolloutTarget,
    ) -> None:
        try:
            template_version = await rollout.run()
        except UpdateFailure as failure:
            log.info("update %s of node group %s failed: %s", record.id, record.nodegroup, failure)
            record.errors = [failure.detail()]
            record.status = "Failed"
        except asyncio.CancelledError:
            record.status = "Cancelled"
            raise
        except Exception as error:
            log.exception("update %s of node group %s broke", record.id, record.nodegroup)
            record.errors = [
                {"errorCode": "Unknown", "errorMessage": str(error), "resourceIds": []}
            ]
            record.status = "Failed"
        else:
            self._versions[record.nodegroup] = _Version(
                target.kubernetes_version, target.release_version, template_version
            )
            record.status = "Successful"
            log.info("update %s of node group %s succeeded", record.id, record.nodegroup)
        finally:
            await client.close()

    def _describe(self, cluster: str, update_id: str, nodegroup: str | None) -> UpdateRecord:
        self._check_cluster(cluster)
        record = self._records.get(update_id)
        if record is None or record.nodegroup != nodegroup:
            raise RestJsonError(
                404,
                "ResourceNotFoundException",
                f"No update found for ID: {update_id}.",
                clusterName=cluster,
                **({"nodegroupName": nodegroup} if nodegroup else {}),
            )
        return record

    def _list(self, cluster: str, query: Any) -> dict[str, Any]:
        self._check_cluster(cluster)
        nodegroup = query.get("nodegroupName")
        ids = [r.id for r in self._records.values() if nodegroup and r.nodegroup == nodegroup]
        try:
            start = int(query.get("nextToken") or 0)
            size = int(query.get("maxResults") or DEFAULT_MAX_RESULTS)
        except ValueError:
            raise RestJsonError(
                400, "InvalidParameterException", "Invalid nextToken or maxResults."
            ) from None
        page = ids[start : start + size]
        answer: dict[str, Any] = {"updateIds": page}
        if start + size < len(ids):
            answer["nextToken"] = str(start + size)
        return answer
