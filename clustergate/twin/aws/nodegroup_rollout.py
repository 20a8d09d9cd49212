"""One managed node-group version update, carried out the way EKS does it.

Setup: a new launch template version with the target release's AMI becomes the Auto Scaling
group's. Then, ``max_unavailable`` old instances at a time: scale up (raise desired capacity,
and max size when needed, by as many instances as are replaced at once; the new instances boot
through the fleet and must become Ready nodes within ``max_node_provision``), cordon the old
nodes and label them ``node.kubernetes.io/exclude-from-external-load-balancers=true`` (all of
them, after the first scale-up), drain each through the Eviction API (``node_drain``), and
terminate its instance with ``TerminateInstanceInAutoScalingGroup`` decrementing desired
capacity. Scale down: the group's sizes go back to what they were.

A failure stops the update where it is, as on EKS: new nodes stay, old nodes stay cordoned, the
group keeps its raised sizes. Faults: ``upgrade-skips-drain`` terminates old instances without
cordoning or draining them (their pods vanish with the node); ``upgrade-stuck`` makes the new
instances register but never become Ready.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from clustergate.twin.aws.fleet import Fleet
from clustergate.twin.aws.images import ImageCatalog
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.node_drain import drain_node
from clustergate.twin.aws.provision import GroupPlan
from clustergate.twin.kubeclient import KubeClient, resource_path
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

EXCLUDE_FROM_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
POLL_SECONDS = 0.2
#: How long a terminated instance may take to leave the fleet and its Node the API.
TERMINATION_SECONDS = 30.0
_LIVE_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


class UpdateFailure(Exception):
    """Why an update failed, as describe_update reports it."""

    def __init__(self, code: str, message: str, resource_ids: list[str]) -> None:
        super().__init__(f"{code}: {message} ({', '.join(resource_ids)})")
        self.code = code
        self.message = message
        self.resource_ids = resource_ids

    def detail(self) -> dict[str, Any]:
        return {
            "errorCode": self.code,
            "errorMessage": self.message,
            "resourceIds": list(self.resource_ids),
        }


@dataclass(frozen=True)
class RolloutTarget:
    kubernetes_version: str
    release_version: str
    force: bool
    max_unavailable: int | None = None
    max_unavailable_percentage: int | None = None


class NodegroupRollout:
    def __init__(
        self,
        settings: TwinSettings,
        moto: MotoClients,
        fleet: Fleet,
        images: ImageCatalog,
        plan: GroupPlan,
        client: KubeClient,
        target: RolloutTarget,
    ) -> None:
        self._settings = settings
        self._moto = moto
        self._fleet = fleet
        self._images = images
        self._plan = plan
        self._client = client
        self._target = target
        self._known: set[str] = set()

    async def run(self) -> str:
        """Roll every instance of the group; returns the launch template version they run."""
        group = await self._group()
        original = (group["MinSize"], group["MaxSize"], group["DesiredCapacity"])
        old = sorted(self._live(group))
        self._known = set(old)
        version = await asyncio.to_thread(self._new_template_version, group)
        if self._settings.has_fault("upgrade-stuck"):
            self._fleet.mark_never_ready(self._plan.launch_template_id, version)
        skip_drain = self._settings.has_fault("upgrade-skips-drain")
        batch_size = self._batch_size(len(old))
        log.info(
            "node group %s: rolling %d instances to %s, %d at a time",
            self._plan.shape.name,
            len(old),
            self._target.release_version,
            batch_size,
        )
        cordoned = False
        for start in range(0, len(old), batch_size):
            batch = old[start : start + batch_size]
            await self._scale_up(len(batch))
            if not skip_drain:
                if not cordoned:
                    await self._cordon([node for iid in old if (node := self._node_of(iid))])
                    cordoned = True
                await self._drain([node for iid in batch if (node := self._node_of(iid))])
            for instance_id in batch:
                await self._terminate(instance_id, self._node_of(instance_id))
        await asyncio.to_thread(
            self._moto.autoscaling.update_auto_scaling_group,
            AutoScalingGroupName=self._plan.asg_name,
            MinSize=original[0],
            MaxSize=original[1],
            DesiredCapacity=original[2],
        )
        self._fleet.poke()
        return version

    def _node_of(self, instance_id: str) -> str | None:
        spec = self._fleet.instances.get(instance_id)
        return spec.node_name if spec else None

    def _batch_size(self, old: int) -> int:
        if self._target.max_unavailable_percentage is not None:
            wanted = math.ceil(old * self._target.max_unavailable_percentage / 100)
        else:
            wanted = self._target.max_unavailable or 1
        return max(1, min(wanted, old)) if old else 1

    async def _group(self) -> dict[str, Any]:
        answer = await asyncio.to_thread(
            self._moto.autoscaling.describe_auto_scaling_groups,
            AutoScalingGroupNames=[self._plan.asg_name],
        )
        return dict(answer["AutoScalingGroups"][0])

    @staticmethod
    def _live(group: dict[str, Any]) -> set[str]:
        return {
            instance["InstanceId"]
            for instance in group["Instances"]
            if instance["LifecycleState"] in _LIVE_STATES
        }

    def _new_template_version(self, group: dict[str, Any]) -> str:
        """Setup: the target release's AMI in a new launch template version, which the group
        launches from now on (also its default: moto reports the default per instance)."""
        ec2 = self._moto.ec2
        template_id = self._plan.launch_template_id
        ami_id = self._images.register(self._moto, self._target.release_version)
        created = ec2.create_launch_template_version(
            LaunchTemplateId=template_id,
            SourceVersion=str(group["LaunchTemplate"]["Version"]),
            VersionDescription=f"EKS managed node group update to {self._target.release_version}",
            LaunchTemplateData={"ImageId": ami_id},
        )["LaunchTemplateVersion"]
        version = str(created["VersionNumber"])
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=version)
        self._moto.autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=self._plan.asg_name,
            LaunchTemplate={"LaunchTemplateId": template_id, "Version": version},
        )
        return version

    async def _scale_up(self, count: int) -> None:
        """Raise the group by ``count`` and wait until that many new instances are Ready nodes."""
        group = await self._group()
        desired = group["DesiredCapacity"] + count
        await asyncio.to_thread(
            self._moto.autoscaling.update_auto_scaling_group,
            AutoScalingGroupName=self._plan.asg_name,
            MaxSize=max(group["MaxSize"], desired),
            DesiredCapacity=desired,
        )
        self._fleet.poke()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.timings.max_node_provision
        new: list[str] = []
        while True:
            new = sorted(self._live(await self._group()) - self._known)[:count]
            ready = [iid for iid in new if await self._node_ready(iid)]
            if len(ready) == count:
                self._known.update(new)
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        stuck = [iid for iid in new if iid not in ready]
        names = [node for iid in stuck if (node := self._node_of(iid))]
        raise UpdateFailure(
            "NodeCreationFailure",
            "Instances failed to join the kubernetes cluster",
            stuck + names,
        )

    async def _node_ready(self, instance_id: str) -> bool:
        spec = self._fleet.instances.get(instance_id)
        if spec is None:
            return False
        node = await self._client.get_or_none(resource_path("v1", "nodes", name=spec.node_name))
        conditions = ((node or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    async def _cordon(self, nodes: list[str]) -> None:
        for node in nodes:
            await self._client.patch(
                resource_path("v1", "nodes", name=node),
                {
                    "metadata": {"labels": {EXCLUDE_FROM_LB: "true"}},
                    "spec": {"unschedulable": True},
                },
            )

    async def _drain(self, nodes: list[str]) -> None:
        limit = self._settings.timings.upgrade_eviction_limit
        left = await asyncio.gather(
            *(
                drain_node(self._client, node, force=self._target.force, limit=limit)
                for node in nodes
            )
        )
        failed = [node for node, pods in zip(nodes, left, strict=True) if pods]
        if failed:
            log.info(
                "node group %s: pods not evicted within %s s: %s",
                self._plan.shape.name,
                limit,
                dict(zip(nodes, left, strict=True)),
            )
            raise UpdateFailure(
                "PodEvictionFailure",
                "Reached max retries while trying to evict pods from nodes in node group "
                f"{self._plan.shape.name}",
                failed,
            )

    async def _terminate(self, instance_id: str, node: str | None) -> None:
        await asyncio.to_thread(
            self._moto.autoscaling.terminate_instance_in_auto_scaling_group,
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=True,
        )
        self._fleet.poke()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TERMINATION_SECONDS
        path = resource_path("v1", "nodes", name=node) if node else None
        while instance_id in self._fleet.instances or (
            path and await self._client.get_or_none(path)
        ):
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"instance {instance_id} (node {node}) was terminated but after "
                    f"{TERMINATION_SECONDS} s its node is still there"
                )
            await asyncio.sleep(POLL_SECONDS)
