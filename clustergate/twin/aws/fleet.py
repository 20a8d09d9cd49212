"""Keeps the booted nodes equal to the instances the Auto Scaling groups hold.

moto's Auto Scaling already adds and removes EC2 instances when desired capacity changes or an
instance is terminated; the fleet turns those instances into nodes: each new one gets its
instance metadata service and is booted by the :class:`NodeLauncher`, each vanished one is
terminated there. It looks at moto every ``POLL_SECONDS`` (longer on big twins, see
:mod:`clustergate.twin.pacing`) and at once when the gateway reports an Auto Scaling, EKS or
EC2 call. A node runs the AMI release of its launch template version's image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clustergate.twin.autoscaler.scaledown import SCALE_DOWN_DISABLED
from clustergate.twin.aws.images import ImageCatalog
from clustergate.twin.aws.imds import Credentials, InstanceIdentity, InstanceMetadataService
from clustergate.twin.aws.instance_types import BY_NAME
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.provision import GroupPlan, Provisioned
from clustergate.twin.aws.releases import kubelet_version
from clustergate.twin.cloud import InstanceSpec, NodeLauncher
from clustergate.twin.netmap import Netmap
from clustergate.twin.pacing import pause_after
from clustergate.twin.settings import ACCOUNT_ID, TwinSettings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
#: Tags Karpenter puts on the instances it launches.
NODECLAIM_TAG = "karpenter.sh/nodeclaim"
NODEPOOL_TAG = "karpenter.sh/nodepool"
NODECLASS_TAG = "karpenter.k8s.aws/ec2nodeclass"
_LIVE_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
_TAINT_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}


@dataclass(frozen=True)
class _Wanted:
    instance_id: str
    #: None for an instance launched outside the node groups (Karpenter's RunInstances).
    group: GroupPlan | None
    zone: str
    launch_template_version: str
    instance_type: str = ""
    image_id: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass
class _Running:
    spec: InstanceSpec
    imds: InstanceMetadataService


def node_name(ip: str, region: str) -> str:
    """EKS node names are the instance's private DNS name."""
    domain = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    return f"ip-{ip.replace('.', '-')}.{domain}"


class Fleet:
    def __init__(
        self,
        settings: TwinSettings,
        netmap: Netmap,
        moto: MotoClients,
        launcher: NodeLauncher,
        provisioned: Provisioned,
        images: ImageCatalog,
    ) -> None:
        self._settings = settings
        self._netmap = netmap
        self._moto = moto
        self._launcher = launcher
        self._provisioned = provisioned
        self._images = images
        self._groups = {group.asg_name: group for group in provisioned.groups}
        self._running: dict[str, _Running] = {}
        self._next_index = 0
        #: (launch template id, version) -> (IMDS hop limit, image id)
        self._template_versions: dict[tuple[str, str], tuple[int, str]] = {}
        self._never_ready: set[tuple[str, str]] = set()
        #: ASG name -> (min, max, desired) both sides agreed on at the last look
        self._synced_sizes: dict[str, tuple[int, int, int]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def instances(self) -> dict[str, InstanceSpec]:
        """The instances booted as nodes, by instance id."""
        return {instance_id: run.spec for instance_id, run in self._running.items()}

    def imds(self, instance_id: str) -> InstanceMetadataService:
        return self._running[instance_id].imds

    def mark_never_ready(self, launch_template_id: str, version: str) -> None:
        """Instances launched from this launch template version register but never become
        Ready (fault upgrade-stuck)."""
        self._never_ready.add((launch_template_id, version))

    def poke(self) -> None:
        """Reconcile now rather than at the next poll (an Auto Scaling call went through)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aws-fleet-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._lock:
            for instance_id in list(self._running):
                await self._forget(instance_id)

    async def _run(self) -> None:
        spent = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause_after(POLL_SECONDS, spent))
            self._wake.clear()
            started = time.monotonic()
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling instances with the Auto Scaling groups failed")
            spent = time.monotonic() - started

    async def reconcile(self) -> None:
        async with self._lock:
            wanted = await asyncio.to_thread(self._wanted)
            gone = [iid for iid in self._running if iid not in wanted]
            new = [w for iid, w in wanted.items() if iid not in self._running]
            for instance_id in gone:
                log.info("instance %s left its Auto Scaling group: terminating", instance_id)
                await self._launcher.terminate(instance_id)
                await self._forget(instance_id)
            specs = [await self._plan(w) for w in new]
            await asyncio.gather(*(self._boot(spec) for spec in specs))

    def _wanted(self) -> dict[str, _Wanted]:
        groups = self._moto.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=list(self._groups)
        )["AutoScalingGroups"]
        if self._sync_scaling(groups):
            groups = self._moto.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=list(self._groups)
            )["AutoScalingGroups"]
        wanted: dict[str, _Wanted] = {}
        for group in groups:
            for instance in sorted(group["Instances"], key=lambda i: i["InstanceId"]):
                if instance["LifecycleState"] not in _LIVE_STATES:
                    continue
                template = instance.get("LaunchTemplate", {})
                wanted[instance["InstanceId"]] = _Wanted(
                    instance_id=instance["InstanceId"],
                    group=self._groups[group["AutoScalingGroupName"]],
                    zone=instance["AvailabilityZone"],
                    launch_template_version=str(template.get("Version", "1")),
                )
        wanted.update(self._launched_by_karpenter())
        return wanted

    def _launched_by_karpenter(self) -> dict[str, _Wanted]:
        """Instances Karpenter launched (tagged with their NodeClaim), pending or running."""
        filters = [
            {"Name": "tag-key", "Values": [NODECLAIM_TAG]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
        wanted: dict[str, _Wanted] = {}
        for reservation in self._moto.ec2.describe_instances(Filters=filters)["Reservations"]:
            for instance in reservation["Instances"]:
                wanted[instance["InstanceId"]] = _Wanted(
                    instance_id=instance["InstanceId"],
                    group=None,
                    zone=instance["Placement"]["AvailabilityZone"],
                    launch_template_version="",
                    instance_type=instance["InstanceType"],
                    image_id=instance["ImageId"],
                    tags=tuple(sorted((t["Key"], t["Value"]) for t in instance.get("Tags", []))),
                )
        return wanted

    def _sync_scaling(self, groups: list[dict[str, Any]]) -> bool:
        """Keep each EKS node group's scalingConfig and its ASG's sizes equal, as EKS does:
        UpdateNodegroupConfig resizes the ASG; a resized ASG (the cluster autoscaler's doing)
        shows in DescribeNodegroup. Whichever side moved since the last look wins. Returns
        whether an ASG was changed."""
        cluster = self._settings.network.cluster_name
        resized = False
        for group in groups:
            plan = self._groups[group["AutoScalingGroupName"]]
            asg = (group["MinSize"], group["MaxSize"], group["DesiredCapacity"])
            config = self._moto.eks.describe_nodegroup(
                clusterName=cluster, nodegroupName=plan.shape.name
            )["nodegroup"]["scalingConfig"]
            eks = (config["minSize"], config["maxSize"], config["desiredSize"])
            synced = self._synced_sizes.get(plan.asg_name, asg)
            if eks != synced:
                log.info("node group %s scaling %s -> ASG %s", plan.shape.name, eks, asg)
                self._moto.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=plan.asg_name,
                    MinSize=eks[0],
                    MaxSize=eks[1],
                    DesiredCapacity=eks[2],
                )
                resized = True
                asg = eks
            elif asg != eks:
                self._moto.eks.update_nodegroup_config(
                    clusterName=cluster,
                    nodegroupName=plan.shape.name,
                    scalingConfig={"minSize": asg[0], "maxSize": asg[1], "desiredSize": asg[2]},
                )
            self._synced_sizes[plan.asg_name] = asg
        return resized

    async def _plan(self, wanted: _Wanted) -> InstanceSpec:
        plan = wanted.group
        if plan is None:
            return self._plan_launched(wanted)
        shape = plan.shape
        hop_limit, image_id, nodegroup = await asyncio.to_thread(
            self._describe, plan, wanted.launch_template_version
        )
        net = self._settings.network
        ip = net.node_ip(self._next_index)
        # The nodes the twin starts with are the cluster's baseline: the autoscaler removes only
        # nodes it added, so checks never see their nodes vanish under them (the twin's
        # unneeded time is seconds, a real cluster's 10 minutes). Registered with the
        # annotation, they are never unprotected, however long a big twin takes to boot.
        baseline = self._next_index < self._settings.node_count
        self._next_index += 1
        release = self._images.release_of(image_id) or nodegroup["releaseVersion"]
        labels = {
            "eks.amazonaws.com/nodegroup": shape.name,
            "eks.amazonaws.com/nodegroup-image": image_id,
            "eks.amazonaws.com/capacityType": nodegroup.get("capacityType", "ON_DEMAND"),
            "eks.amazonaws.com/sourceLaunchTemplateId": plan.launch_template_id,
            "eks.amazonaws.com/sourceLaunchTemplateVersion": wanted.launch_template_version,
            "node.kubernetes.io/instance-type": shape.instance_type,
            "topology.kubernetes.io/region": net.region,
            "topology.kubernetes.io/zone": wanted.zone,
            **nodegroup.get("labels", {}),
        }
        taints = tuple(
            {
                "key": taint["key"],
                "value": taint.get("value", ""),
                "effect": _TAINT_EFFECTS.get(taint["effect"], taint["effect"]),
            }
            for taint in nodegroup.get("taints", [])
        )
        return InstanceSpec(
            instance_id=wanted.instance_id,
            node_name=node_name(ip, net.region),
            node_ip=ip,
            nodegroup=shape.name,
            zone=wanted.zone,
            instance_type=shape.instance_type,
            kubelet_version=kubelet_version(release),
            release_version=release,
            cpu_millis=shape.cpu_millis,
            memory_mib=shape.memory_mib,
            max_pods=shape.max_pods,
            imds_hop_limit=hop_limit,
            labels=labels,
            annotations={SCALE_DOWN_DISABLED: "true"} if baseline else {},
            taints=taints,
            never_ready=(plan.launch_template_id, wanted.launch_template_version)
            in self._never_ready,
        )

    def _plan_launched(self, wanted: _Wanted) -> InstanceSpec:
        """A Karpenter instance: sized by its type, labelled and tainted from its NodeClaim's
        tags (the twin's stand-in for the user data Karpenter writes)."""
        net = self._settings.network
        ip = net.node_ip(self._next_index)
        self._next_index += 1
        kind = BY_NAME.get(wanted.instance_type, BY_NAME["m5.large"])
        release = self._images.release_of(wanted.image_id) or ""
        tags = dict(wanted.tags)
        labels = {
            "karpenter.sh/nodepool": tags.get(NODEPOOL_TAG, ""),
            "karpenter.sh/capacity-type": "on-demand",
            "karpenter.k8s.aws/instance-category": kind.category,
            "karpenter.k8s.aws/instance-family": kind.family,
            "karpenter.k8s.aws/ec2nodeclass": tags.get(NODECLASS_TAG, ""),
            "karpenter.sh/registered": "true",
        }
        return InstanceSpec(
            instance_id=wanted.instance_id,
            node_name=node_name(ip, net.region),
            node_ip=ip,
            nodegroup="",
            zone=wanted.zone,
            instance_type=kind.name,
            kubelet_version=kubelet_version(release) if release else "",
            release_version=release,
            cpu_millis=kind.cpu_millis,
            memory_mib=kind.memory_mib,
            max_pods=kind.max_pods,
            imds_hop_limit=1,
            labels=labels,
            image_id=wanted.image_id,
        )

    def _describe(self, plan: GroupPlan, template_version: str) -> tuple[int, str, dict[str, Any]]:
        """(the launch template version's IMDS hop limit and image, the EKS node group as it
        is now)."""
        key = (plan.launch_template_id, template_version)
        if key not in self._template_versions:
            version = self._moto.ec2.describe_launch_template_versions(
                LaunchTemplateId=plan.launch_template_id, Versions=[template_version]
            )["LaunchTemplateVersions"][0]
            data = version["LaunchTemplateData"]
            options = data.get("MetadataOptions", {})
            self._template_versions[key] = (
                int(options.get("HttpPutResponseHopLimit", 1)),
                data.get("ImageId", plan.ami_id),
            )
        nodegroup = self._moto.eks.describe_nodegroup(
            clusterName=self._settings.network.cluster_name, nodegroupName=plan.shape.name
        )["nodegroup"]
        hop_limit, image_id = self._template_versions[key]
        return hop_limit, image_id, nodegroup

    async def _boot(self, spec: InstanceSpec) -> None:
        net = self._settings.network
        imds = InstanceMetadataService(
            InstanceIdentity(
                instance_id=spec.instance_id,
                instance_type=spec.instance_type,
                ami_id=spec.image_id or spec.labels["eks.amazonaws.com/nodegroup-image"],
                zone=spec.zone,
                region=net.region,
                account_id=ACCOUNT_ID,
                local_ipv4=spec.node_ip,
                local_hostname=spec.node_name,
                role_name=self._provisioned.node_role_name,
                instance_profile_arn=self._provisioned.instance_profile_arn,
                hop_limit=spec.imds_hop_limit,
            ),
            lambda: asyncio.to_thread(self._node_credentials, spec.instance_id),
        )
        host, pod = await imds.start()
        self._netmap.publish(net.imds_ip, 80, host, node=spec.node_name)
        self._netmap.publish(net.imds_ip, 80, pod, node=f"{spec.node_name}/pod-network")
        self._running[spec.instance_id] = _Running(spec, imds)
        log.info("booting %s as node %s (%s)", spec.instance_id, spec.node_name, spec.nodegroup)
        try:
            await self._launcher.launch(spec)
        except Exception:
            log.exception("launching %s failed; it will be retried", spec.instance_id)
            await self._forget(spec.instance_id)

    async def _forget(self, instance_id: str) -> None:
        running = self._running.pop(instance_id)
        net = self._settings.network
        self._netmap.withdraw(net.imds_ip, 80, node=running.spec.node_name)
        self._netmap.withdraw(net.imds_ip, 80, node=f"{running.spec.node_name}/pod-network")
        await running.imds.stop()

    def _node_credentials(self, instance_id: str) -> Credentials:
        """The node role's credentials as EC2 hands them to an instance."""
        assumed = self._moto.sts.assume_role(
            RoleArn=self._provisioned.node_role_arn, RoleSessionName=instance_id
        )["Credentials"]
        return {
            "Code": "Success",
            "LastUpdated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": assumed["AccessKeyId"],
            "SecretAccessKey": assumed["SecretAccessKey"],
            "Token": assumed["SessionToken"],
            "Expiration": assumed["Expiration"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
