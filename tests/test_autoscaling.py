"""The autoscaler suite's library: status formats, ASG checks, capacity and pause sizing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import boto3
import pytest
from kubernetes import client
from moto import mock_aws

from clustergate import autoscaling
from clustergate.config import NodeGroup

NOW = dt.datetime(2024, 5, 21, 9, 33, 30, tzinfo=dt.UTC)
YAML_STATUS = """\
time: 2024-05-21 09:33:19.946587318 +0000 UTC
autoscalerStatus: Running
clusterWide:
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 3, ready: 3, notStarted: 0}
    lastProbeTime: "2024-05-21T09:33:19Z"
    lastTransitionTime: "2024-05-21T09:05:27Z"
  scaleUp:
    status: NoActivity
  scaleDown:
    status: NoCandidates
    candidates: 0
nodeGroups:
- name: eks-ng-a-1234
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 2, ready: 2}
    cloudProviderTarget: 2
    minSize: 1
    maxSize: 6
"""
TEXT_STATUS = """\
Cluster-autoscaler status at 2023-03-14 10:00:00.123456789 +0000 UTC:
Cluster-wide:
  Health:      Healthy (ready=3 unready=0 notStarted=0 longNotStarted=0 registered=3 longUnregistered=0)
               LastProbeTime:      2023-03-14 10:00:00.1 +0000 UTC m=+3600.1
               LastTransitionTime: 2023-03-14 09:00:00.1 +0000 UTC m=+10.1
  ScaleUp:     InProgress (ready=3 registered=3)
               LastProbeTime:      2023-03-14 10:00:00.1 +0000 UTC m=+3600.1
  ScaleDown:   NoCandidates (candidates=0)

NodeGroups:
  Name:        eks-ng-a-1234
  Health:      Healthy (ready=2 unready=0 notStarted=0 longNotStarted=0 registered=2 longUnregistered=0 cloudProviderTarget=3 (minSize=1, maxSize=5))
  ScaleUp:     InProgress (ready=2 cloudProviderTarget=3)
"""  # noqa: E501


def test_the_yaml_status_is_read_with_groups_and_time() -> None:
    status = autoscaling.parse_status(YAML_STATUS)
    assert (status.format, status.health, status.scale_up) == ("yaml", "Healthy", "NoActivity")
    assert status.updated == dt.datetime(2024, 5, 21, 9, 33, 19, 946587, tzinfo=dt.UTC)
    group = status.group("eks-ng-a-1234")
    assert group is not None
    assert (group.min_size, group.max_size, group.target, group.ready) == (1, 6, 2, 2)


def test_the_plain_text_status_of_older_autoscalers_is_read_too() -> None:
    status = autoscaling.parse_status(TEXT_STATUS)
    assert (status.format, status.health, status.scale_up) == ("text", "Healthy", "InProgress")
    assert status.scale_down == "NoCandidates"
    assert status.updated == dt.datetime(2023, 3, 14, 10, 0, 0, 123456, tzinfo=dt.UTC)
    group = status.group("eks-ng-a-1234")
    assert group is not None
    assert (group.min_size, group.max_size, group.target, group.registered) == (1, 5, 3, 2)


def test_the_last_updated_annotation_wins_over_the_document_time() -> None:
    annotations = {autoscaling.LAST_UPDATED: "2024-05-21 09:33:29.5 +0000 UTC"}
    status = autoscaling.parse_status(YAML_STATUS, annotations)
    assert status.age_s(NOW) == 0.5


def test_a_stale_or_unhealthy_status_is_named() -> None:
    status = autoscaling.parse_status(YAML_STATUS)
    assert autoscaling.status_problems(status, NOW, 30, "cm") == []
    late = NOW + dt.timedelta(minutes=5)
    assert (
        "last written 310s ago (limit 30s)"
        in autoscaling.status_problems(status, late, 30, "cm")[0]
    )
    sick = autoscaling.parse_status(
        YAML_STATUS.replace(
            "status: Healthy\n    nodeCounts:\n      registered: {total: 3",
            "status: Unhealthy\n    nodeCounts:\n      registered: {total: 3",
        )
    )
    assert autoscaling.status_problems(sick, NOW, 30, "cm") == [
        "cm reports cluster-wide health 'Unhealthy', not Healthy"
    ]


def test_an_unknown_status_format_is_an_error() -> None:
    with pytest.raises(autoscaling.StatusFormatError):
        autoscaling.parse_status("just words")


def _sizes(desired: int, max_size: int, **tags: str) -> autoscaling.GroupSizes:
    return autoscaling.GroupSizes("ng", "asg", 1, max_size, desired, tags)


def test_discovery_tags_and_headroom() -> None:
    tagged = {"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/c1": "owned"}
    assert autoscaling.discovery_tag_problems(_sizes(2, 4, **tagged), "c1") == []
    missing = autoscaling.discovery_tag_problems(_sizes(2, 4, **tagged), "c2")
    assert "k8s.io/cluster-autoscaler/c2" in missing[0]
    assert autoscaling.size_problems(_sizes(2, 4)) == []
    assert "at its maximum" in autoscaling.size_problems(_sizes(4, 4))[0]
    assert "outside min..max" in autoscaling.size_problems(_sizes(0, 4))[0]


def test_nodepools_must_be_ready() -> None:
    ready = {
        "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    broken = {
        "metadata": {"name": "b"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "NodeClassNotReady", "message": "x"}
            ]
        },
    }
    assert autoscaling.nodepool_problems([ready]) == []
    assert autoscaling.nodepool_problems([ready, broken]) == [
        "NodePool b is not Ready (NodeClassNotReady: x)"
    ]
    assert "no Karpenter NodePool" in autoscaling.nodepool_problems([])[0]


def _pool(limits: dict[str, str], resources: dict[str, str], ready: bool = True) -> dict:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    if not ready:
        condition |= {"reason": "NodeClassReadyFalse", "message": "NodeClass is NotReady"}
    return {
        "metadata": {"name": "default"},
        "spec": {
            "limits": limits,
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "default",
                    }
                }
            },
        },
        "status": {"resources": resources, "conditions": [condition]},
    }


@pytest.mark.parametrize(
    ("limits", "resources", "reached"),
    [
        ({"cpu": "1000"}, {"cpu": "4"}, None),
        ({"cpu": "0"}, {"cpu": "0"}, "cpu 0 in use of limit 0"),
        ({"cpu": "4", "memory": "64Gi"}, {"cpu": "4000m", "memory": "1Gi"}, "cpu 4000m in use"),
        ({"memory": "1Gi"}, {}, None),
        ({}, {"cpu": "100"}, None),
    ],
)
def test_nodepool_limits_reached_are_problems(
    limits: dict[str, str], resources: dict[str, str], reached: str | None
) -> None:
    problems = autoscaling.nodepool_problems([_pool(limits, resources)])
    if reached is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert "NodePool default is at its limits" in problems[0]
        assert reached in problems[0]


def test_nodepool_not_ready_names_its_node_class_and_the_failing_condition() -> None:
    node_class = {
        "status": {
            "conditions": [
                {
                    "type": "SubnetsReady",
                    "status": "False",
                    "reason": "SubnetsNotFound",
                    "message": "SubnetSelector did not match any Subnets",
                },
                {"type": "SecurityGroupsReady", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "SubnetsReadyFalse"},
            ]
        }
    }
    pool = _pool({}, {}, ready=False)
    [problem] = autoscaling.nodepool_problems([pool], {"default": node_class})
    assert problem.startswith("NodePool default is not Ready (NodeClassReadyFalse:")
    assert (
        "its EC2NodeClass default is not Ready: SubnetsReady False "
        "(SubnetsNotFound: SubnetSelector did not match any Subnets)"
    ) in problem
    assert "SecurityGroupsReady" not in problem
    assert "kubectl describe ec2nodeclasses.karpenter.k8s.aws default" in problem
    [missing] = autoscaling.nodepool_problems([pool], {"default": None})
    assert missing.endswith("its EC2NodeClass default does not exist")


def _node(name: str, cpu: str = "2", group: str = "ng-a") -> client.V1Node:
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels={"eks.amazonaws.com/nodegroup": group}),
        spec=client.V1NodeSpec(),
        status=client.V1NodeStatus(
            allocatable={"cpu": cpu, "memory": "8Gi", "pods": "29"},
            conditions=[client.V1NodeCondition(type="Ready", status="True")],
        ),
    )


def _pod(node: str, cpu: str, phase: str = "Running", init_cpu: str = "") -> client.V1Pod:
    def container(name: str, request: str) -> client.V1Container:
        return client.V1Container(
            name=name, resources=client.V1ResourceRequirements(requests={"cpu": request})
        )

    return client.V1Pod(
        spec=client.V1PodSpec(
            node_name=node,
            containers=[container("c", cpu)],
            init_containers=[container("i", init_cpu)] if init_cpu else None,
        ),
        status=client.V1PodStatus(phase=phase),
    )


def test_free_capacity_comes_from_allocatable_and_requests() -> None:
    pods = [
        _pod("a", "500m"),
        _pod("a", "100m", init_cpu="300m"),
        _pod("a", "1", phase="Succeeded"),
    ]
    (capacity,) = autoscaling.node_capacities([_node("a")], pods)
    assert capacity.requested_cpu == Decimal("0.8")
    assert capacity.free_cpu == Decimal("1.2")
    assert capacity.pods == 2


def test_pause_pods_need_exactly_the_extra_nodes() -> None:
    nodes = [_node("a"), _node("b"), _node("c", cpu="4")]
    pods = [_pod("a", "1500m"), _pod("b", "200m")]
    plan = autoscaling.plan_pause_pods(autoscaling.node_capacities(nodes, pods), extra_nodes=2)
    # 1200m pods: a has 500m free (0), b 1800m (1), c 4000m (3)
    assert (plan.cpu_millis, plan.slots, plan.replicas) == (1200, 4, 6)


def test_the_pause_workload_stays_in_the_configured_groups() -> None:
    plan = autoscaling.PausePlan(1200, 16 * 2**20, 3, 4)
    run = type(
        "Run",
        (),
        {"labels": {"run": "x"}, "metadata": lambda self, name: client.V1ObjectMeta(name=name)},
    )()
    deployment = autoscaling.pause_deployment(run, "pause", plan, {"ng-b", "ng-a"})
    spec = deployment.spec.template.spec
    assert deployment.spec.replicas == 4
    assert spec.containers[0].image == "registry.k8s.io/pause:3.10"
    assert spec.containers[0].resources.requests["cpu"] == "1200m"
    required = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    terms = required.node_selector_terms
    assert [t.match_expressions[0].values for t in terms] == [["ng-a", "ng-b"], ["ng-a", "ng-b"]]


def test_go_times_with_monotonic_suffix_and_rfc3339() -> None:
    assert autoscaling.parse_go_time("2024-05-21 09:33:19 +0200 CEST m=+1.5") == dt.datetime(
        2024, 5, 21, 7, 33, 19, tzinfo=dt.UTC
    )
    assert autoscaling.parse_go_time("2024-05-21T09:33:19Z") == dt.datetime(
        2024, 5, 21, 9, 33, 19, tzinfo=dt.UTC
    )


@mock_aws
def test_asg_sizes_are_read_and_restored_over_boto3() -> None:
    session = boto3.Session(
        region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    ec2 = session.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="t",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.small"},
    )["LaunchTemplate"]
    asg = session.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="asg-a",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]},
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=["us-west-2a"],
        Tags=[
            {"Key": "k8s.io/cluster-autoscaler/enabled", "Value": "true", "PropagateAtLaunch": True}
        ],
    )
    (sizes,) = autoscaling.node_group_asgs(session, "c1", [NodeGroup(name="ng-a", asg="asg-a")])
    assert (sizes.nodegroup, sizes.desired, sizes.max_size) == ("ng-a", 2, 4)
    assert len(autoscaling.discovery_tag_problems(sizes, "c1")) == 1
    autoscaling.set_desired(session, "asg-a", 3)
    autoscaling.restore_desired(session, [sizes])
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["asg-a"])["AutoScalingGroups"][
        0
    ]
    assert group["DesiredCapacity"] == 2
    # After a killed run, the sweep puts back what the run namespace recorded.
    autoscaling.set_desired(session, "asg-a", 4)
    done = autoscaling.restore_recorded_sizes(autoscaling.sizes_record([sizes]), session)
    assert done == "set the desired capacity of ASG asg-a back to 2"
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["asg-a"])["AutoScalingGroups"]
    assert group[0]["DesiredCapacity"] == 2
    with pytest.raises(AssertionError, match="asg-missing"):
        autoscaling.node_group_asgs(session, "c1", [NodeGroup(name="ng-x", asg="asg-missing")])
