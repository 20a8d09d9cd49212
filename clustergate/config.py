"""The cluster config: what the cluster under test is expected to be.

A YAML file validated against the models below. Unknown keys are errors (a misspelt key would
otherwise silently fall back to a default), and every error names the key path and the problem.
``examples/cluster.eks.yaml`` documents each key for a live EKS cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clustergate.input_errors import InputError

Seconds = Annotated[float, Field(gt=0)]
Milliseconds = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
ROLE_ARN_PREFIX = "arn:aws:iam::"


class ConfigError(InputError):
    """A config file that cannot be used; the message names the file, key and problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSection(Strict):
    name: str
    region: str
    #: Control-plane minor version the run expects, e.g. "1.31"; read from the API when absent.
    kubernetes_version: str | None = None
    #: The AWS account the run's credentials must be in; not checked when absent.
    account_id: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None


class ProbeSection(Strict):
    image: str = "ghcr.io/clustergate/clustergate-probe:0.1.0"
    #: Prefix of the namespaces a run creates: <prefix>-<run id>-<worker>.
    namespace_prefix: str = "clustergate"
    image_pull_secrets: tuple[str, ...] = ()


class AwsCall(Strict):
    """An API call a role must be allowed or denied, made from a probe pod with its credentials."""

    service: str
    operation: str
    parameters: dict[str, str] = Field(default_factory=dict)


class IrsaMapping(Strict):
    namespace: str
    service_account: str
    role_arn: str
    #: The trust policy may use StringLike system:serviceaccount:<namespace>:* on purpose.
    namespace_wide: bool = False
    must_allow: tuple[AwsCall, ...] = ()
    must_deny: tuple[AwsCall, ...] = ()

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not value.startswith(ROLE_ARN_PREFIX) or ":role/" not in value:
            raise ValueError(f"must be an IAM role ARN ({ROLE_ARN_PREFIX}<account>:role/<name>)")
        return value


class IrsaSection(Strict):
    audience: str = "sts.amazonaws.com"
    mappings: tuple[IrsaMapping, ...] = ()
    #: Probe pods check that node credentials are unreachable through instance metadata.
    expect_imds_blocked: bool = True


class DnsSlo(Strict):
    p50_ms: Milliseconds = 10
    p99_ms: Milliseconds = 100


class DnsSection(Strict):
    nodelocal_ip: str = "169.254.20.10"
    mode: Literal["iptables", "ipvs"] = "iptables"
    #: 0 probes every node; N probes N nodes per (node group, zone).
    sample_per_group_zone: int = Field(default=0, ge=0)
    queries_per_name: int = Field(default=20, ge=1)
    external_names: tuple[str, ...] = ("amazonaws.com",)
    #: Your latency objective; none set means the latency check skips (it cannot be discovered).
    slo: DnsSlo | None = None
    #: Longest tolerated resolution gap while a node's cache pod restarts.
    restart_gap_max_s: Seconds = 2.0


class NodeGroup(Strict):
    name: str
    #: Auto Scaling group name; discovered from the EKS node group when absent.
    asg: str | None = None


class AutoscalerSection(Strict):
    kind: Literal["cluster-autoscaler", "karpenter", "none"] = "cluster-autoscaler"
    namespace: str = "kube-system"
    deployment: str = "cluster-autoscaler"
    status_configmap: str = "cluster-autoscaler-status"
    #: How many nodes beyond free capacity the scale-up check asks for.
    extra_nodes: int = Field(default=1, ge=1)
    status_max_age_s: Seconds = 180


class DrainSection(Strict):
    replicas: int = Field(default=4, ge=2)
    #: minAvailable of the check's own budget; replicas - 1 keeps it tight.
    min_available: int | None = None
    #: An evicted pod's replacement is Ready within this of its creation. Every drain, node-group
    #: upgrade and scale-down waits this long per pod its budgets let go at a time.
    replacement_ready_max_s: Seconds = 120

    @model_validator(mode="after")
    def _budget_below_replicas(self) -> DrainSection:
        if self.min_available is not None and self.min_available >= self.replicas:
            raise ValueError("min_available must be below replicas, or no pod could ever move")
        return self


class UpgradeSection(Strict):
    nodegroup: str | None = None
    version: str | None = None
    release_version: str | None = None
    max_pending_s: Seconds = 120


def _old_and_new(value: dict[str, str]) -> dict[str, str]:
    if set(value) != {"old", "new"}:
        raise ValueError(f"needs exactly the keys old and new, got {sorted(value)}")
    return value


class ElbDriver(Strict):
    kind: Literal["elbv2"]
    listener_arn: str
    #: Target group ARN per cluster: {old: ..., new: ...}.
    target_groups: dict[str, str]

    _groups = field_validator("target_groups")(_old_and_new)


class Route53Driver(Strict):
    kind: Literal["route53"]
    hosted_zone_id: str
    record_name: str
    #: SetIdentifier of the weighted record per cluster: {old: ..., new: ...}.
    set_identifiers: dict[str, str]
    #: The zone's authoritative name servers ("host" or "host:port"), asked directly to sample
    #: the weighted answers with no cache in front. Empty: the zone's delegation set
    #: (``GetHostedZone``), on port 53.
    name_servers: tuple[str, ...] = ()

    _ids = field_validator("set_identifiers")(_old_and_new)


class CommandDriver(Strict):
    """Runs ``command`` with ``{weight}`` (0-100, share of the new cluster) substituted."""

    kind: Literal["command"]
    command: str


class NoDriver(Strict):
    """Someone else changes the weights; each step waits until the split follows."""

    kind: Literal["none"]


WeightDriver = Annotated[
    ElbDriver | Route53Driver | CommandDriver | NoDriver, Field(discriminator="kind")
]


class CutoverStep(Strict):
    weight: int = Field(ge=0, le=100)
    users: int = Field(default=10, ge=1)
    spawn_rate: float = Field(default=10, gt=0)
    max_duration_s: Seconds = 60
    min_requests: int = Field(default=200, ge=1)


class CutoverSlo(Strict):
    error_rate_max: Share = 0.01
    p95_ms: Milliseconds = 300
    p99_ms: Milliseconds = 800
    #: New may be this much slower (median ratio) before the rank test can fail it.
    slowdown_ratio_max: float = Field(default=1.2, ge=1)


class CutoverSection(Strict):
    endpoint: str
    path: str = "/"
    backend_header: str | None = "X-Served-By"
    backend_field: str | None = None
    old_backend: str = "old"
    new_backend: str = "new"
    driver: WeightDriver
    #: Name servers ("host" or "host:port") the load's clients resolve the endpoint's host
    #: through, each client with its own cache that keeps an answer for its TTL. Empty: those
    #: of /etc/resolv.conf. Only the route53 driver's traffic verdict depends on it
    #: (docs/cutover-route53.md).
    resolver: tuple[str, ...] = ()
    steps: tuple[CutoverStep, ...]
    tolerance: Share = 0.03
    #: For the whole cutover: each of N steps decides at 1 - (1 - confidence) / N, so a healthy
    #: cutover is failed by chance at most 1 - confidence of the time, not N times that.
    confidence: float = Field(default=0.99, gt=0.5, lt=1)
    slo: CutoverSlo = CutoverSlo()

    @model_validator(mode="after")
    def _steps_rise(self) -> CutoverSection:
        weights = [step.weight for step in self.steps]
        if not weights:
            raise ValueError("steps must list at least one weight")
        if weights != sorted(weights):
            raise ValueError(f"steps must not go down, got weights {weights}")
        if not (self.backend_header or self.backend_field):
            raise ValueError("set backend_header or backend_field to tell which cluster served")
        return self


class Timeouts(Strict):
    preflight_s: Seconds = 15
    pod_ready_s: Seconds = 180
    probe_s: Seconds = 180
    drain_s: Seconds = 900
    scale_up_s: Seconds = 1200
    scale_down_s: Seconds = 1800
    upgrade_s: Seconds = 5400
    weight_propagation_s: Seconds = 180
    #: The longest a check waits for its turn: a disruptive check for the run's other checks to
    #: end, any other check for a disruptive one.
    lease_s: Seconds = 7200

    @model_validator(mode="before")
    @classmethod
    def _no_sweep_age(cls, data: object) -> object:
        if isinstance(data, dict) and "sweep_after_s" in data:
            raise ValueError(
                "sweep_after_s is gone: --sweep removes what dead runs left whatever its age "
                "and nothing of live ones (a run is dead when its heartbeat expired; see "
                "runs.heartbeat_s and runs.no_heartbeat_grace_s)"
            )
        return data


class RunsSection(Strict):
    """Each run's heartbeat (``clustergate.heartbeat``) and how a run ends when told to."""

    #: Where each run's heartbeat Lease (clustergate-run-<run id>) lives; the run writes it.
    heartbeat_namespace: str = "kube-system"
    #: leaseDurationSeconds of the heartbeat, renewed every third of it: a killed run counts as
    #: dead (and --sweep removes what it left) at most this long after it was killed.
    heartbeat_s: int = Field(default=30, ge=3)
    #: Objects of a run that has no heartbeat at all count as alive while younger than this.
    no_heartbeat_grace_s: Seconds = 120
    #: After SIGTERM (a cancelled pipeline job, which is killed some seconds later), put-backs
    #: and deletions still undone after this long are left for --sweep.
    sigterm_deadline_s: Seconds = 20


class ExpectedTaint(Strict):
    """A NoSchedule taint the gate does not report: nodes are meant to carry it."""

    key: str
    #: Any value when absent.
    value: str | None = None


class NodesSection(Strict):
    """What the gate accepts on nodes: cordons and NoSchedule taints put there on purpose."""

    #: Nodes cordoned on purpose (by another tool or a person).
    expected_cordoned: tuple[str, ...] = ()
    expected_taints: tuple[ExpectedTaint, ...] = ()


class ReportsSection(Strict):
    dir: str = "reports"
    history_dir: str = "reports/history"
    history_runs: int = Field(default=7, ge=1)
    regression_ratio: float = Field(default=1.5, gt=1)
    #: A regression against the history fails the run instead of only warning in the report.
    regressions_fail: bool = False


class ClusterConfig(Strict):
    cluster: ClusterSection
    probe: ProbeSection = ProbeSection()
    irsa: IrsaSection = IrsaSection()
    dns: DnsSection = DnsSection()
    node_groups: tuple[NodeGroup, ...] = ()
    autoscaler: AutoscalerSection = AutoscalerSection()
    drain: DrainSection = DrainSection()
    upgrade: UpgradeSection = UpgradeSection()
    cutover: CutoverSection | None = None
    timeouts: Timeouts = Timeouts()
    runs: RunsSection = RunsSection()
    nodes: NodesSection = NodesSection()
    reports: ReportsSection = ReportsSection()


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source} is not a valid clustergate config:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelt, or not a clustergate setting)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {key}: {message}")
    lines.append("examples/cluster.eks.yaml documents every key.")
    return "\n".join(lines)


def parse_config(data: object, source: str = "config") -> ClusterConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping at the top level")
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path) -> ClusterConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    return parse_config(data, str(path))
