"""The twin's AWS side over real protocols: boto3 against the gateway, IMDS over HTTP.

The OIDC issuer here is a small aiohttp HTTPS server in the test (with a CA of its own) serving
a discovery document and a JWKS of a key the test generates: a legitimate stand-in for the API
server's issuer (another component), speaking the same two documents STS reads. The node
launcher is a test double that records what it is asked to boot and terminate (the Kubernetes
side is another component).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import boto3
import jwt
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from botocore.utils import InstanceMetadataFetcher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from clustergate.twin.autoscaler.scaledown import SCALE_DOWN_DISABLED
from clustergate.twin.aws import AwsFacts, AwsSide
from clustergate.twin.cloud import InstanceSpec
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import NodeGroupShape, TwinSettings
from tests.loop_thread import LoopThread

REGION = "us-west-2"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/C1USTERGATET3STISSUER"
UNKNOWN_ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/N0PR0VIDER"
PAYMENTS = "system:serviceaccount:payments:payments-api"
ORDERS = "system:serviceaccount:orders:orders-worker"
STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
#: botocore's IMDS client obeys $AWS_EC2_METADATA_DISABLED, which tox sets so that nothing
#: probes this machine's 169.254.169.254; these tests ask the twin's IMDS, so they ignore it.
IMDS_ON: dict[str, str] = {}


class RecordingLauncher:
    def __init__(self) -> None:
        self.launched: list[InstanceSpec] = []
        self.terminated: list[str] = []

    async def launch(self, spec: InstanceSpec) -> None:
        self.launched.append(spec)

    async def terminate(self, instance_id: str) -> None:
        self.terminated.append(instance_id)

    @property
    def live(self) -> set[str]:
        return {spec.instance_id for spec in self.launched} - set(self.terminated)


def write_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (written to ``ca.pem``) and a server context whose certificate it signed for
    127.0.0.1, as the API server serves its issuer."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path = directory / "server.pem"
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path)
    return ca_path, context


class Issuer:
    """An OIDC issuer: discovery document and JWKS over HTTPS, tokens signed with its key."""

    def __init__(self, netmap: Netmap, tls: ssl.SSLContext) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self._netmap = netmap
        self._tls = tls
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/keys", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        port = self._runner.addresses[0][1]
        self._netmap.publish_url(ISSUER, f"https://127.0.0.1:{port}")

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": ISSUER,
                "jwks_uri": f"{ISSUER}/keys",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return web.json_response({"keys": [jwk]})

    def token(
        self,
        sub: str,
        aud: str = "sts.amazonaws.com",
        lifetime: float = 600,
        iss: str = ISSUER,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": iss,
            "sub": sub,
            "aud": [aud],
            "iat": now - 5,
            "nbf": now - 5,
            "exp": int(now + lifetime),
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})


class Twin:
    def __init__(self, loop: LoopThread, tmp: Path, faults: frozenset[str]) -> None:
        self.loop = loop
        groups = (
            NodeGroupShape("ng-general-a", 2, min_size=1, max_size=6, zone="us-west-2a"),
            NodeGroupShape("ng-general-b", 1, min_size=1, max_size=5, zone="us-west-2b"),
        )
        self.settings = TwinSettings(state_dir=str(tmp), node_groups=groups, faults=faults)
        self.netmap = Netmap()
        self.ca_path, tls = write_tls(tmp)
        self.issuer = Issuer(self.netmap, tls)
        self.launcher = RecordingLauncher()
        self.aws = AwsSide(self.settings, self.netmap)
        loop.run(self.issuer.start())
        loop.run(self.aws.start())
        self.facts: AwsFacts = loop.run(
            self.aws.bootstrap(ISSUER, self.launcher, issuer_ca_pem_path=str(self.ca_path))
        )

    def close(self) -> None:
        self.loop.run(self.aws.stop())
        self.loop.run(self.issuer.stop())

    def client(self, service: str, **credentials: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws.endpoint_url,
            region_name=REGION,
            aws_access_key_id=credentials.get("AccessKeyId", "testing"),
            aws_secret_access_key=credentials.get("SecretAccessKey", "testing"),
            aws_session_token=credentials.get("SessionToken"),
        )

    def role_arn(self, service_account: str) -> str:
        return next(m.role_arn for m in self.facts.irsa if m.service_account == service_account)

    def assume(self, service_account: str, token: str) -> dict[str, Any]:
        return self.client("sts").assume_role_with_web_identity(
            RoleArn=self.role_arn(service_account), RoleSessionName="probe", WebIdentityToken=token
        )

    def wait_for(self, what: str, check: Callable[[], bool], seen: Callable[[], object]) -> None:
        deadline = time.monotonic() + 10
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"waited 10 s for {what}; last seen: {seen()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.close()


# Class scope: moto's state is per process, so one twin runs at a time (each class has its own).
@pytest.fixture(scope="class")
def healthy(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    twin = Twin(loop, tmp_path_factory.mktemp("healthy"), frozenset())
    yield twin
    twin.close()


@pytest.fixture(scope="class")
def faulty(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    faults = frozenset(
        {"irsa-wildcard-trust", "irsa-no-audience", "imds-hop-limit-2", "irsa-role-admin"}
    )
    twin = Twin(loop, tmp_path_factory.mktemp("faults"), faults)
    yield twin
    twin.close()


def error_of(call: Callable[[], object]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error["Code"], error["Message"], status


@pytest.mark.usefixtures("healthy")
class TestHealthy:
    @pytest.fixture
    def twin(self, healthy: Twin) -> Twin:
        return healthy

    def test_right_service_account_gets_its_role(self, twin: Twin) -> None:
        answer = twin.assume("payments-api", twin.issuer.token(PAYMENTS))
        assert answer["SubjectFromWebIdentityToken"] == PAYMENTS
        assert answer["Audience"] == "sts.amazonaws.com"
        assert answer["Provider"] == twin.facts.oidc_provider_arn
        identity = twin.client("sts", **answer["Credentials"]).get_caller_identity()
        assert identity["Arn"] == (
            "arn:aws:sts::123456789012:assumed-role/clustergate-twin-payments-api/probe"
        )

    def test_role_credentials_get_what_the_role_allows_and_nothing_else(self, twin: Twin) -> None:
        credentials = twin.assume("payments-api", twin.issuer.token(PAYMENTS))["Credentials"]
        twin.client("autoscaling", **credentials).describe_auto_scaling_groups()
        twin.client("sts", **credentials).get_caller_identity()
        code, message, status = error_of(lambda: twin.client("iam", **credentials).list_roles())
        assert (code, status) == ("AccessDenied", 403)
        assert message.startswith(
            "User: arn:aws:sts::123456789012:assumed-role/clustergate-twin-payments-api/probe "
            "is not authorized to perform: iam:ListRoles"
        )
        code, _, status = error_of(lambda: twin.client("ec2", **credentials).describe_instances())
        assert (code, status) == ("UnauthorizedOperation", 403)
        # The runner's own keys are not a role session: nothing changes for them.
        twin.client("iam").list_roles()

    def test_config_lists_each_roles_allowed_and_denied_calls(self, twin: Twin) -> None:
        by_account = {m.service_account: m for m in twin.facts.irsa}
        assert by_account["payments-api"].may_call == (
            ("autoscaling", "DescribeAutoScalingGroups"),
        )
        assert by_account["payments-api"].must_not_call == (
            ("elbv2", "DescribeLoadBalancers"),
            ("iam", "ListRoles"),
        )

    def test_get_form_is_verified_too(self, twin: Twin) -> None:
        query = urllib.parse.urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": "2011-06-15",
                "RoleArn": twin.role_arn("orders-worker"),
                "RoleSessionName": "get",
                "WebIdentityToken": twin.issuer.token(PAYMENTS),
            }
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{twin.aws.endpoint_url}/?{query}", timeout=10)
        assert caught.value.code == 403
        code = ET.fromstring(caught.value.read()).find(f"{STS_NS}Error/{STS_NS}Code")
        assert code is not None
        assert code.text == "AccessDenied"
        allowed = query.replace(
            urllib.parse.quote_plus(twin.role_arn("orders-worker")),
            urllib.parse.quote_plus(twin.role_arn("payments-api")),
        )
        with urllib.request.urlopen(f"{twin.aws.endpoint_url}/?{allowed}", timeout=10) as reply:
            arn = ET.fromstring(reply.read()).find(
                f"{STS_NS}AssumeRoleWithWebIdentityResult/{STS_NS}AssumedRoleUser/{STS_NS}Arn"
            )
        assert arn is not None
        assert arn.text is not None
        assert arn.text.endswith("assumed-role/clustergate-twin-payments-api/get")

    @pytest.mark.parametrize(
        ("role_of", "subject"),
        [
            ("payments-api", "system:serviceaccount:payments:other"),
            ("payments-api", "system:serviceaccount:orders:payments-api"),
            ("orders-worker", PAYMENTS),
        ],
        ids=["other-sa-same-namespace", "same-sa-other-namespace", "other-mapping"],
    )
    def test_other_service_accounts_are_denied(
        self, twin: Twin, role_of: str, subject: str
    ) -> None:
        code, message, status = error_of(lambda: twin.assume(role_of, twin.issuer.token(subject)))
        assert (code, status) == ("AccessDenied", 403)
        assert message == "Not authorized to perform sts:AssumeRoleWithWebIdentity"

    def test_wrong_audience(self, twin: Twin) -> None:
        token = twin.issuer.token(PAYMENTS, aud="https://kubernetes.default.svc")
        assert error_of(lambda: twin.assume("payments-api", token)) == (
            "InvalidIdentityToken",
            "Incorrect token audience",
            400,
        )

    def test_expired_token(self, twin: Twin) -> None:
        token = twin.issuer.token(PAYMENTS, lifetime=-30)
        code, message, status = error_of(lambda: twin.assume("payments-api", token))
        assert (code, status) == ("ExpiredTokenException", 400)
        assert message.startswith("Token expired: current date/time ")
        assert "must be before the expiration date/time" in message

    def test_issuer_without_provider(self, twin: Twin) -> None:
        token = twin.issuer.token(PAYMENTS, iss=UNKNOWN_ISSUER)
        assert error_of(lambda: twin.assume("payments-api", token)) == (
            "InvalidIdentityToken",
            f"No OpenIDConnect provider found in your account for {UNKNOWN_ISSUER}",
            400,
        )

    def test_foreign_signature_and_garbage(self, twin: Twin) -> None:
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        code, _, status = error_of(
            lambda: twin.assume("payments-api", twin.issuer.token(PAYMENTS, key=forger))
        )
        assert (code, status) == ("InvalidIdentityToken", 400)
        code, message, _ = error_of(lambda: twin.assume("payments-api", "not-a-jwt" * 4))
        assert code == "InvalidIdentityToken"
        assert "not a valid JWT" in message

    def test_provider_records_the_issuer_ca_thumbprint(self, twin: Twin) -> None:
        provider = twin.client("iam").get_open_id_connect_provider(
            OpenIDConnectProviderArn=twin.facts.oidc_provider_arn
        )
        ca_der = ssl.PEM_cert_to_DER_cert(twin.ca_path.read_text())
        assert provider["ThumbprintList"] == [hashlib.sha1(ca_der).hexdigest()]
        assert provider["ClientIDList"] == ["sts.amazonaws.com"]

    def test_audience_in_provider_but_not_in_trust_is_denied(self, twin: Twin) -> None:
        add_client_id(twin, "other-app")
        token = twin.issuer.token(ORDERS, aud="other-app")
        assert error_of(lambda: twin.assume("orders-worker", token))[0] == "AccessDenied"

    def test_eks_reports_our_issuer_and_node_groups(self, twin: Twin) -> None:
        eks = twin.client("eks")
        cluster = eks.describe_cluster(name="clustergate-twin")["cluster"]
        assert cluster["identity"]["oidc"]["issuer"] == ISSUER
        assert cluster["version"] == "1.31"
        for name, asg_name in twin.facts.asg_names.items():
            group = eks.describe_nodegroup(clusterName="clustergate-twin", nodegroupName=name)
            assert group["nodegroup"]["resources"]["autoScalingGroups"] == [{"name": asg_name}]
            assert group["nodegroup"]["releaseVersion"].startswith("1.31.")
        groups = twin.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=list(twin.facts.asg_names.values())
        )["AutoScalingGroups"]
        for group in groups:
            tags = {tag["Key"]: tag["Value"] for tag in group["Tags"]}
            assert tags["k8s.io/cluster-autoscaler/enabled"] == "true"
            assert tags["k8s.io/cluster-autoscaler/clustergate-twin"] == "owned"

    def test_other_services_pass_through_to_moto(self, twin: Twin) -> None:
        zone = twin.client("route53").create_hosted_zone(
            Name="cutover.example.com", CallerReference="test"
        )["HostedZone"]
        zones = twin.client("route53").list_hosted_zones()["HostedZones"]
        assert [z["Id"] for z in zones] == [zone["Id"]]
        elbv2 = twin.client("elbv2")
        vpc = twin.client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
        elbv2.create_target_group(Name="new-cluster", Protocol="HTTP", Port=80, VpcId=vpc)
        names = [g["TargetGroupName"] for g in elbv2.describe_target_groups()["TargetGroups"]]
        assert names == ["new-cluster"]
        for public in ("https://sts.us-west-2.amazonaws.com", "https://iam.amazonaws.com"):
            assert twin.netmap.resolve_url(public + "/") == twin.aws.endpoint_url + "/"

    def test_trust_policies_are_the_documented_ones(self, twin: Twin) -> None:
        iam = twin.client("iam")
        host = ISSUER.removeprefix("https://")
        for mapping in twin.facts.irsa:
            role = iam.get_role(RoleName=mapping.role_arn.rsplit("/", 1)[1])["Role"]
            (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
            assert statement["Principal"] == {"Federated": twin.facts.oidc_provider_arn}
            assert statement["Condition"] == {
                "StringEquals": {
                    f"{host}:sub": f"system:serviceaccount:{mapping.namespace}:"
                    f"{mapping.service_account}",
                    f"{host}:aud": "sts.amazonaws.com",
                }
            }
            assert mapping.role_arn not in mapping.denied_role_arns
            assert mapping.denied_role_arns

    def test_initial_instances_become_nodes(self, twin: Twin) -> None:
        specs = twin.launcher.launched[:3]
        assert sorted(spec.nodegroup for spec in specs) == [
            "ng-general-a",
            "ng-general-a",
            "ng-general-b",
        ]
        first = next(spec for spec in specs if spec.node_ip == "10.0.0.10")
        assert first.node_name == "ip-10-0-0-10.us-west-2.compute.internal"
        assert first.instance_id.startswith("i-")
        assert first.kubelet_version.startswith("v1.31.2-eks-")
        assert first.release_version == "1.31.2-20241106"
        assert first.imds_hop_limit == 1
        assert first.labels["eks.amazonaws.com/nodegroup"] == first.nodegroup
        assert first.labels["topology.kubernetes.io/zone"] == first.zone
        hop_limits = launch_template_hop_limits(twin)
        assert set(hop_limits.values()) == {1}
        # The baseline registers protected from the autoscaler's scale-down.
        assert all(spec.annotations == {SCALE_DOWN_DISABLED: "true"} for spec in specs)

    def test_imds_gives_node_credentials_on_host_network_only(self, twin: Twin) -> None:
        spec = twin.launcher.launched[0]
        host = imds_url(twin, spec.node_name)
        pod = imds_url(twin, spec.node_name, f"{spec.node_name}/pod-network")
        assert host != pod

        credentials = InstanceMetadataFetcher(
            timeout=10, num_attempts=3, base_url=host, env=IMDS_ON
        ).retrieve_iam_role_credentials()
        assert credentials["role_name"] == "clustergate-twin-node-role"
        node = twin.client(
            "sts",
            AccessKeyId=credentials["access_key"],
            SecretAccessKey=credentials["secret_key"],
            SessionToken=credentials["token"],
        ).get_caller_identity()
        assert node["Arn"].endswith(f"assumed-role/clustergate-twin-node-role/{spec.instance_id}")

        with pytest.raises(urllib.error.HTTPError) as v1:
            urllib.request.urlopen(f"{host}latest/meta-data/instance-id", timeout=2)
        assert v1.value.code == 401

        started = time.monotonic()
        from_pod = InstanceMetadataFetcher(
            timeout=1, num_attempts=1, base_url=pod, env=IMDS_ON
        ).retrieve_iam_role_credentials()
        assert from_pod == {}
        assert time.monotonic() - started >= 1.0  # the token PUT timed out, not refused

    def test_imds_metadata_over_imdsv2(self, twin: Twin) -> None:
        spec = twin.launcher.launched[0]
        host = imds_url(twin, spec.node_name)
        put = urllib.request.Request(
            f"{host}latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(put, timeout=2) as reply:
            token = reply.read().decode()

        def get(path: str) -> str:
            request = urllib.request.Request(
                f"{host}latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
            )
            with urllib.request.urlopen(request, timeout=2) as reply:
                return reply.read().decode()

        assert get("instance-id") == spec.instance_id
        assert get("placement/availability-zone") == spec.zone
        assert get("local-ipv4") == spec.node_ip
        assert get("iam/security-credentials/") == "clustergate-twin-node-role"

    def test_desired_capacity_drives_launch_and_terminate(self, twin: Twin) -> None:
        autoscaling = twin.client("autoscaling")
        asg = twin.facts.asg_names["ng-general-b"]
        before = set(twin.launcher.live)
        autoscaling.set_desired_capacity(AutoScalingGroupName=asg, DesiredCapacity=2)
        twin.wait_for(
            "a fourth instance to be launched",
            lambda: len(twin.launcher.live) == len(before) + 1,
            lambda: twin.launcher.live,
        )
        (added,) = twin.launcher.live - before
        spec = next(s for s in twin.launcher.launched if s.instance_id == added)
        assert spec.nodegroup == "ng-general-b"
        assert spec.zone == "us-west-2b"
        assert spec.node_ip not in {s.node_ip for s in twin.launcher.launched if s is not spec}
        assert SCALE_DOWN_DISABLED not in spec.annotations, "an added node must be removable"

        autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=added, ShouldDecrementDesiredCapacity=True
        )
        twin.wait_for(
            f"{added} to be terminated",
            lambda: added in twin.launcher.terminated,
            lambda: twin.launcher.terminated,
        )
        assert twin.launcher.live == before
        assert twin.netmap.resolve("169.254.169.254", 80, spec.node_name) is None

        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=twin.facts.asg_names["ng-general-a"], DesiredCapacity=1
        )
        twin.wait_for(
            "one ng-general-a instance to be terminated",
            lambda: len(twin.launcher.live) == len(before) - 1,
            lambda: twin.launcher.live,
        )

    def test_node_group_and_asg_sizes_follow_each_other(self, twin: Twin) -> None:
        eks = twin.client("eks")
        asg = twin.facts.asg_names["ng-general-b"]
        before = set(twin.launcher.live)
        eks.update_nodegroup_config(
            clusterName="clustergate-twin",
            nodegroupName="ng-general-b",
            scalingConfig={"minSize": 1, "maxSize": 5, "desiredSize": 2},
        )
        twin.wait_for(
            "UpdateNodegroupConfig to launch an instance",
            lambda: len(twin.launcher.live) == len(before) + 1,
            lambda: twin.launcher.live,
        )
        autoscaling = twin.client("autoscaling")
        autoscaling.set_desired_capacity(AutoScalingGroupName=asg, DesiredCapacity=1)

        def desired_size() -> int:
            group = eks.describe_nodegroup(
                clusterName="clustergate-twin", nodegroupName="ng-general-b"
            )
            return group["nodegroup"]["scalingConfig"]["desiredSize"]

        twin.wait_for(
            "DescribeNodegroup to show desiredSize 1", lambda: desired_size() == 1, desired_size
        )
        twin.wait_for(
            "the extra instance to be terminated",
            lambda: len(twin.launcher.live) == len(before),
            lambda: twin.launcher.live,
        )


@pytest.mark.usefixtures("faulty")
class TestFaults:
    @pytest.fixture
    def twin(self, faulty: Twin) -> Twin:
        return faulty

    def test_wildcard_trust_lets_another_service_account_in(self, twin: Twin) -> None:
        answer = twin.assume("payments-api", twin.issuer.token(ORDERS))
        assert answer["AssumedRoleUser"]["Arn"].endswith(
            "assumed-role/clustergate-twin-payments-api/probe"
        )
        # The other role keeps its exact trust.
        assert error_of(lambda: twin.assume("orders-worker", twin.issuer.token(PAYMENTS)))[0] == (
            "AccessDenied"
        )

    def test_admin_role_may_call_anything(self, twin: Twin) -> None:
        credentials = twin.assume("payments-api", twin.issuer.token(PAYMENTS))["Credentials"]
        twin.client("iam", **credentials).list_roles()
        twin.client("elbv2", **credentials).describe_load_balancers()
        orders = twin.assume("orders-worker", twin.issuer.token(ORDERS))["Credentials"]
        assert error_of(lambda: twin.client("iam", **orders).list_roles())[0] == "AccessDenied"

    def test_no_audience_accepts_another_client_id(self, twin: Twin) -> None:
        add_client_id(twin, "other-app")
        answer = twin.assume("orders-worker", twin.issuer.token(ORDERS, aud="other-app"))
        assert answer["Audience"] == "other-app"
        # An audience the provider does not know is still refused by STS itself.
        token = twin.issuer.token(ORDERS, aud="unknown")
        assert error_of(lambda: twin.assume("orders-worker", token))[1] == (
            "Incorrect token audience"
        )

    def test_hop_limit_2_lets_pods_reach_node_credentials(self, twin: Twin) -> None:
        assert set(launch_template_hop_limits(twin).values()) == {2}
        spec = twin.launcher.launched[0]
        assert spec.imds_hop_limit == 2
        pod = imds_url(twin, spec.node_name, f"{spec.node_name}/pod-network")
        credentials = InstanceMetadataFetcher(
            timeout=10, num_attempts=3, base_url=pod, env=IMDS_ON
        ).retrieve_iam_role_credentials()
        assert credentials["role_name"] == "clustergate-twin-node-role"


def add_client_id(twin: Twin, client_id: str) -> None:
    """Give the provider a second client ID (moto has no AddClientIDToOpenIDConnectProvider:
    the provider is recreated with both, keeping its ARN)."""
    iam = twin.client("iam")
    arn = twin.facts.oidc_provider_arn
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    if client_id in provider["ClientIDList"]:
        return
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    iam.create_open_id_connect_provider(
        Url=ISSUER,
        ClientIDList=[*provider["ClientIDList"], client_id],
        ThumbprintList=provider["ThumbprintList"],
    )


def launch_template_hop_limits(twin: Twin) -> dict[str, int]:
    ec2 = twin.client("ec2")
    limits = {}
    for group, template_id in twin.facts.launch_template_ids.items():
        version = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)[
            "LaunchTemplateVersions"
        ][0]
        options = version["LaunchTemplateData"]["MetadataOptions"]
        assert options["HttpTokens"] == "required"
        limits[group] = options["HttpPutResponseHopLimit"]
    return limits


def imds_url(twin: Twin, *scopes: str) -> str:
    address = twin.netmap.resolve("169.254.169.254", 80, *scopes)
    assert address is not None, f"no instance metadata listener for {scopes}"
    return f"http://{address[0]}:{address[1]}/"
