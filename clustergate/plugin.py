"""Target selection and the fixtures every suite shares (options: clustergate/options.py).

Registered by ``clustergate.options`` (the ``pytest11`` entry point) in a clustergate run only.
This file is the only place that chooses a target (DESIGN.md). ``--target twin`` starts the local
twin through its command line, once per run on the process that owns the run (the xdist
controller), and from then on uses exactly what a live run uses: the kubeconfig, the AWS
environment and the cluster config that the twin wrote. Workers inherit the target through the
environment. Checks only ever see the fixtures below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3
import pytest
from kubernetes.client.exceptions import ApiException

from clustergate import evidence, heartbeat, leftovers, preflight, runctx, shutdown
from clustergate.autoscaling import restore_recorded_sizes
from clustergate.config import ClusterConfig, load_config
from clustergate.cutover import restore_recorded_weight
from clustergate.failure_evidence import EvidenceWriter, FailureDiagnostics
from clustergate.input_errors import InputError
from clustergate.kube import Cluster, connect, list_all
from clustergate.lease import disruption_lease
from clustergate.redact import Redactor, known_secrets
from clustergate.report.history import settings_from_config
from clustergate.results import Recorder, SummaryWriter
from clustergate.selection import INCLUDED_IN, disruption_allowed, selected_suites
from clustergate.turns import Turns, remove_turns

TARGET_ENV = "CLUSTERGATE_TARGET"


@dataclass(frozen=True)
class Target:
    kind: str
    kubeconfig: str | None
    context: str | None
    config: str
    run_id: str
    twin_state_dir: str | None = None


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _start_twin(config: pytest.Config) -> tuple[str, dict[str, str]]:
    state_dir = tempfile.mkdtemp(prefix="clustergate-twin-")
    command = [
        sys.executable,
        "-m",
        "clustergate.twin",
        "up",
        "--state-dir",
        state_dir,
        "--nodes",
        str(config.getoption("twin_nodes")),
    ]
    for fault in config.getoption("twin_fault"):
        command += ["--fault", fault]
    started = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if started.returncode != 0:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise pytest.UsageError(f"the local twin did not start:\n{started.stderr.strip()}")
    env = json.loads((Path(state_dir) / "aws-env.json").read_text())
    return state_dir, env


def _stop_twin(state_dir: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "clustergate.twin", "down", "--state-dir", state_dir],
        capture_output=True,
        timeout=60,
        check=False,
    )
    shutil.rmtree(state_dir, ignore_errors=True)


def _resolve_target(config: pytest.Config) -> Target:
    kind = config.getoption("target") or (
        "live" if config.getoption("kubeconfig") or config.getoption("context") else "twin"
    )
    run_id = runctx.new_run_id()
    if kind == "live":
        if not config.getoption("config"):
            raise pytest.UsageError("--target live needs --config FILE (see examples/)")
        return Target(
            "live",
            config.getoption("kubeconfig"),
            config.getoption("context"),
            config.getoption("config"),
            run_id,
        )
    state_dir, env = _start_twin(config)
    os.environ.update(env)
    return Target(
        "twin",
        str(Path(state_dir) / "kubeconfig"),
        None,
        str(Path(state_dir) / "cluster.yaml"),
        run_id,
        state_dir,
    )


def pytest_configure(config: pytest.Config) -> None:
    for profile, wider in INCLUDED_IN.items():
        config.addinivalue_line("markers", f"{profile}: profile; also in {', '.join(wider) or '-'}")
    if _is_worker(config):
        config.stash[_TARGET] = target = Target(**json.loads(os.environ[TARGET_ENV]))
        shutdown.install(target.run_id, worker=True)
        return
    shutdown.install(None, worker=False)  # a cancelled job may stop the twin's start too
    target = _resolve_target(config)
    shutdown.install(target.run_id, worker=False)
    config.stash[_TARGET] = target
    os.environ[TARGET_ENV] = json.dumps(asdict(target))


def pytest_unconfigure(config: pytest.Config) -> None:
    target = config.stash.get(_TARGET, None)
    if target is None:
        return
    if _is_worker(config):
        shutdown.leave()
        return
    shutdown.remove(target.run_id)
    beat = config.stash.get(_HEARTBEAT, None)
    if beat is not None:
        beat.stop()
    remove_turns(target.run_id)
    if target.twin_state_dir:
        _stop_twin(target.twin_state_dir)


_TARGET = pytest.StashKey[Target]()
_CLUSTER = pytest.StashKey[Cluster]()
_CONFIG = pytest.StashKey[ClusterConfig]()
_TURNS = pytest.StashKey[Turns]()
_RUN = pytest.StashKey[runctx.RunContext]()
_HEARTBEAT = pytest.StashKey[heartbeat.Heartbeat]()


def _say(config: pytest.Config, line: str) -> None:
    """A line on the terminal, unless ``-q`` asked for quiet (the facts keep it anyway)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() >= 0:
        reporter.write_line(line)


def _connect(config: pytest.Config) -> tuple[Cluster, ClusterConfig]:
    target = config.stash[_TARGET]
    try:
        cluster_config = load_config(target.config)
        cluster = connect(
            target.kubeconfig, target.context, timeout_s=cluster_config.timeouts.preflight_s
        )
    except InputError as error:
        raise pytest.UsageError(str(error)) from None
    return cluster, cluster_config


def _start_heartbeat(
    cluster: Cluster, cluster_config: ClusterConfig, run_id: str
) -> heartbeat.Heartbeat:
    """The run's heartbeat, held by the process that owns the run (never by an xdist worker)."""
    section = cluster_config.runs
    beat = heartbeat.Heartbeat(cluster, run_id, section.heartbeat_namespace, section.heartbeat_s)
    try:
        beat.start()
    except ApiException as error:
        raise pytest.UsageError(
            f"could not create the run's heartbeat Lease {section.heartbeat_namespace}/"
            f"{beat.name}: {error.status} {error.reason}; set runs.heartbeat_namespace in the "
            "cluster config to a namespace this run may write leases in"
        ) from None
    return beat


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    cluster, cluster_config = _connect(config)
    config.stash[_CLUSTER], config.stash[_CONFIG] = cluster, cluster_config
    shutdown.set_deadline_s(cluster_config.runs.sigterm_deadline_s)
    config.pluginmanager.register(
        FailureDiagnostics(lambda item: item.config.stash.get(_RUN, None)), "cg-diagnostics"
    )
    if _is_worker(config):
        return
    target = config.stash[_TARGET]
    markexpr = config.getoption("markexpr") or ""
    suites = selected_suites(config.args, config.rootpath, markexpr)
    disruptive = disruption_allowed(markexpr, config.getoption("allow_disruptive"))
    try:
        version = preflight.check_cluster(
            cluster,
            preflight.required_permissions(
                suites,
                disruptive,
                config.getoption("sweep"),
                [mapping.namespace for mapping in cluster_config.irsa.mappings],
                cluster_config.runs.heartbeat_namespace,
            ),
        )
        proof = None if disruptive else preflight.prove_read_only(cluster)
        caller = ""
        if preflight.AWS_SUITES.intersection(suites) or config.getoption("sweep"):
            caller = preflight.check_aws(
                boto3.Session(region_name=cluster_config.cluster.region),
                None,
                cluster_config.cluster.account_id,
                target.config,
            )
    except InputError as error:
        raise pytest.UsageError(f"preflight failed: {error}") from None
    access = [f"--kubeconfig={cluster.kubeconfig}", f"--context={cluster.context}"]
    # Which runs are alive, for the sweep and for a disruptive run's refusal on leftovers.
    runs = heartbeat.read_runs(
        cluster, own=target.run_id, grace_s=cluster_config.runs.no_heartbeat_grace_s
    )
    if config.getoption("sweep"):
        session = boto3.Session(region_name=cluster_config.cluster.region)
        report = leftovers.sweep(
            cluster,
            runs,
            restore={
                runctx.RESTORE_WEIGHTS: lambda data: restore_recorded_weight(data, session),
                runctx.RESTORE_SIZES: lambda data: restore_recorded_sizes(data, session),
            },
        )
        pytest.exit(f"sweep done: {report.describe()}", returncode=pytest.ExitCode.OK)
    if disruptive and (found := leftovers.find(cluster, runs)):
        raise pytest.UsageError(
            "refusing to start a disruptive run on a cluster that dead runs left dirty: "
            + leftovers.describe(found, " ".join(access))
        )
    config.stash[_HEARTBEAT] = _start_heartbeat(cluster, cluster_config, target.run_id)
    nodes = list_all(cluster.core().list_node)
    facts = {
        "kubernetes_version": version,
        "nodes": len(nodes),
        "node_groups": sorted(
            {(n.metadata.labels or {}).get("eks.amazonaws.com/nodegroup", "-") for n in nodes}
        ),
        "target": target.kind,
        "server": cluster.server,
        "context": cluster.context,
        "cluster": cluster_config.cluster.name,
        "run_id": target.run_id,
        "suites": suites,
        "disruptive_allowed": disruptive,
        "roles_needed": preflight.profile_roles(disruptive),
        "gate_read_only": None if proof is None else proof.describe(),
        "aws_caller": caller,
    }
    roles = " and ".join(preflight.profile_roles(disruptive))
    verdict = f"; {proof.describe()}" if proof is not None else ""
    _say(config, f"clustergate preflight: this profile needs ClusterRole {roles}{verdict}")
    reports = Path(config.getoption("reports_dir"))
    history = settings_from_config(cluster_config.reports, reports, config.getoption("history_dir"))
    redactor = Redactor(known_secrets(cluster.api.configuration))
    config.pluginmanager.register(
        SummaryWriter(reports / "summary.json", facts, history, redactor), "cg-summary"
    )
    aws_session = boto3.Session(region_name=cluster_config.cluster.region)
    config.pluginmanager.register(
        EvidenceWriter(
            reports,
            target.run_id,
            {
                **facts,
                **evidence.cluster_facts(
                    cluster, aws_session, cluster_config.cluster.name, target.config
                ),
            },
            {
                "kubernetes": evidence.kubernetes_identity(cluster),
                "aws": evidence.aws_identity(aws_session),
            },
            redactor,
            access,
            Path(config.option.xmlpath) if config.option.xmlpath else None,
        ),
        "cg-evidence",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    allowed = disruption_allowed(
        config.getoption("markexpr") or "", config.getoption("allow_disruptive")
    )
    # The hygiene checks come first: a cluster that dead runs left dirty is judged by nothing else.
    items.sort(key=lambda item: item.get_closest_marker("hygiene") is None)
    for item in items:
        for profile, wider in INCLUDED_IN.items():
            if item.get_closest_marker(profile):
                for name in wider:
                    item.add_marker(name)
        if item.get_closest_marker("disruptive") and not allowed:
            item.add_marker(
                pytest.mark.skip(
                    reason="disruptive: select -m signoff/nightly or pass --allow-disruptive"
                )
            )


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Cluster:
    return pytestconfig.stash[_CLUSTER]


@pytest.fixture(scope="session")
def cluster_config(pytestconfig: pytest.Config) -> ClusterConfig:
    return pytestconfig.stash[_CONFIG]


@pytest.fixture(scope="session")
def aws(cluster_config: ClusterConfig) -> boto3.Session:
    """A boto3 session from the standard credential chain, in the cluster's region."""
    return boto3.Session(region_name=cluster_config.cluster.region)


@pytest.fixture(scope="session")
def run(
    pytestconfig: pytest.Config, cluster: Cluster, cluster_config: ClusterConfig
) -> Iterator[runctx.RunContext]:
    """The run's context: id, a namespace of this worker's own, and the undo list."""
    target = pytestconfig.stash[_TARGET]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    namespace = f"{cluster_config.probe.namespace_prefix}-{target.run_id}-{worker}"
    labels = runctx.run_labels(target.run_id)
    runctx.create_namespace(cluster, namespace, labels)
    context = runctx.RunContext(
        cluster,
        target.run_id,
        namespace,
        labels,
        keep_on_failure=pytestconfig.getoption("keep_on_failure"),
    )
    pytestconfig.stash[_RUN] = context
    try:
        yield context
    finally:
        failures = context.undo_all()
        if context.kept_for:
            runctx.keep_namespace(cluster, namespace, context.kept_for)
        elif not context.everything_put_back or shutdown.past_deadline():
            failures.append(f"namespace {namespace} stays, with what it records, for --sweep")
        else:
            runctx.delete_namespace(cluster, namespace)
        if failures:
            pytest.fail("could not put back: " + "; ".join(failures), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _module_names(run: runctx.RunContext) -> None:
    """What a module's fixtures name (the pods they probe) belongs to that module's checks only:
    autouse, so it runs before the module's other module-scoped fixtures."""
    run.forget_shared()


@pytest.fixture(autouse=True)
def _check_scope(run: runctx.RunContext) -> Iterator[None]:
    """What a check registers with ``run.on_teardown`` is put back when that check ends, before
    it gives up its turn (a drained node is uncordoned before other checks run again)."""
    with run.check_scope() as failures:
        yield
    if failures:
        pytest.fail("could not put back: " + "; ".join(failures), pytrace=False)


@pytest.fixture
def artifacts(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Path:
    """A directory of this check's files for the evidence bundle (load phases' request logs
    and Locust stats), under reports/artifacts/<run id>/."""
    run_id = pytestconfig.stash[_TARGET].run_id
    root = evidence.artifacts_dir(Path(pytestconfig.getoption("reports_dir")), run_id)
    path = root / evidence.slug(request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Recorder:
    """``measure(name, value, unit, **context)`` records a measurement with this check."""
    return Recorder(request.node)


def _runs_disruptively(item: pytest.Item) -> bool:
    return item.get_closest_marker("disruptive") is not None and not item.get_closest_marker("skip")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[bool]:
    """A disruptive check runs alone in this run (``clustergate.turns``), from its setup to its
    teardown; other checks hold their turn from their module's first setup to its teardown."""
    config = item.config
    turns = config.stash.get(_TURNS, None)
    if turns is None:
        timeout_s = config.stash[_CONFIG].timeouts.lease_s
        turns = config.stash[_TURNS] = Turns(config.stash[_TARGET].run_id, timeout_s)
    turns.take(item.nodeid, disruptive=_runs_disruptively(item))
    try:
        return (yield)
    finally:
        module_ends = nextitem is None or nextitem.module is not item.module
        if module_ends or _runs_disruptively(nextitem) != turns.disruptive:
            turns.release()


@pytest.fixture(autouse=True)
def _disruption_lease(request: pytest.FixtureRequest) -> Iterator[None]:
    """A disruptive check holds the cluster's disruption Lease against other runs."""
    if request.node.get_closest_marker("disruptive") is None:
        yield
        return
    target = request.config.stash[_TARGET]
    with disruption_lease(request.getfixturevalue("cluster"), target.run_id):
        yield
