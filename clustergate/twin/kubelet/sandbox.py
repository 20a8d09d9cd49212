"""A pod's sandbox: the directory that stands for its containers' root filesystem, filled as a
kubelet fills a pod's mounts (resolv.conf, volumes, projected service-account tokens), and the
environment its containers get."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import shutil
from pathlib import Path
from typing import Any

from clustergate.twin.controllers.objects import Obj
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path
from clustergate.twin.settings import TwinSettings

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: The kube-api-access volume's token lifetime (3600 s plus the 7 s the admission adds).
DEFAULT_TOKEN_SECONDS = 3607
_VAR_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class SandboxError(Exception):
    """The pod cannot start: a missing ConfigMap/Secret, a failed token request."""


def resolv_conf(pod: Obj, settings: TwinSettings) -> str:
    """/etc/resolv.conf as the kubelet writes it for the pod's dnsPolicy and dnsConfig."""
    network = settings.network
    spec = pod["spec"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    host_search = [f"{network.region}.compute.internal"]
    host_servers = [str(ipaddress.ip_network(network.node_cidr, strict=False)[2])]
    cluster_dns = network.kube_dns_ip if network.proxy_mode == "iptables" else network.nodelocal_ip
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        domain = network.cluster_domain
        namespace = pod["metadata"]["namespace"]
        search = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host_search]
        servers = [cluster_dns]
        options = ["ndots:5"]
    elif policy == "Default":
        search, servers = host_search, host_servers
    else:  # None: only dnsConfig
        search, servers = [], []
    config = spec.get("dnsConfig") or {}
    servers = [*servers, *(config.get("nameservers") or [])][:3]
    search = [*search, *(config.get("searches") or [])]
    for option in config.get("options") or []:
        name = option["name"]
        options = [o for o in options if o.split(":", 1)[0] != name]
        options.append(f"{name}:{option['value']}" if option.get("value") else name)
    lines = []
    if search:
        lines.append("search " + " ".join(dict.fromkeys(search)))
    lines.extend(f"nameserver {server}" for server in servers)
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) references as the kubelet expands them; unknown ones stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REFERENCE.sub(replace, value)


def field_value(pod: Obj, path: str) -> str:
    """A downward-API fieldRef."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    values: dict[str, Any] = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "metadata.labels": "\n".join(
            f'{k}="{v}"' for k, v in sorted((meta.get("labels") or {}).items())
        ),
        "metadata.annotations": "\n".join(
            f'{k}="{v}"' for k, v in sorted((meta.get("annotations") or {}).items())
        ),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path not in values:
        raise SandboxError(f"unsupported fieldRef {path!r}")
    return str(values[path])


class Sandbox:
    """Builds one pod's sandbox under ``state_dir/pods/<ns>/<pod>/``."""

    def __init__(self, settings: TwinSettings, client: KubeClient, pod: Obj) -> None:
        self.settings = settings
        self.client = client
        self.pod = pod
        meta = pod["metadata"]
        self.root = Path(settings.state_dir, "pods", meta["namespace"], meta["name"]).resolve()
        self._objects: dict[tuple[str, str], Obj | None] = {}

    def path(self, container_path: str) -> Path:
        """Where an absolute path of the container lives in the sandbox."""
        return self.root / container_path.lstrip("/")

    @property
    def netmap_path(self) -> Path:
        return self.root / ".netmap.json"

    @property
    def logs_dir(self) -> Path:
        return self.root.parent / f".{self.root.name}.logs"

    async def prepare(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.path("/etc").mkdir(parents=True)
        self.path("/tmp").mkdir()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.path("/etc/resolv.conf").write_text(resolv_conf(self.pod, self.settings))
        self.path("/etc/hostname").write_text(self.pod["metadata"]["name"] + "\n")
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        mounted_sa = False
        for container in self._all_containers():
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount["name"])
                if volume is None:
                    raise SandboxError(f"volume {mount['name']!r} not found in the pod spec")
                mounted_sa |= mount["mountPath"].rstrip("/") == SA_MOUNT
                await self._materialize(volume, self.path(mount["mountPath"]))
        if not mounted_sa and await self._automount():
            await self._default_service_account(self.path(SA_MOUNT))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.logs_dir, ignore_errors=True)

    def _all_containers(self) -> list[Obj]:
        spec = self.pod["spec"]
        return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]

    async def _automount(self) -> bool:
        spec = self.pod["spec"]
        if spec.get("automountServiceAccountToken") is not None:
            return bool(spec["automountServiceAccountToken"])
        account = await self._get("serviceaccounts", spec.get("serviceAccountName") or "default")
        return not account or account.get("automountServiceAccountToken") is not False

    async def _get(self, plural: str, name: str) -> Obj | None:
        key = (plural, name)
        if key not in self._objects:
            namespace = self.pod["metadata"]["namespace"]
            self._objects[key] = await self.client.get_or_none(
                resource_path("v1", plural, namespace, name)
            )
        return self._objects[key]

    async def _default_service_account(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        token = await self.request_token(None, DEFAULT_TOKEN_SECONDS)
        _write(target / "token", token)
        root_ca = await self._get("configmaps", "kube-root-ca.crt")
        ca = (root_ca or {}).get("data", {}).get("ca.crt") or Path(
            self.client.ca_pem_path
        ).read_text()
        _write(target / "ca.crt", ca)
        _write(target / "namespace", self.pod["metadata"]["namespace"])

    async def request_token(self, audience: str | None, seconds: int) -> str:
        """A TokenRequest for the pod's service account, bound to the pod."""
        meta = self.pod["metadata"]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec: Obj = {
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        path = resource_path("v1", "serviceaccounts", meta["namespace"], account)
        try:
            answer = await self.client.post_subresource(
                path,
                "token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except ApiError as error:
            raise SandboxError(
                f'failed to fetch token: serviceaccounts "{account}" token: {error.message}'
            ) from error
        return str(answer["status"]["token"])

    async def _materialize(self, volume: Obj, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            await self._key_files("configmaps", volume["configMap"], target)
        elif "secret" in volume:
            source = {**volume["secret"], "name": volume["secret"].get("secretName")}
            await self._key_files("secrets", source, target)
        elif "downwardAPI" in volume:
            self._downward(volume["downwardAPI"].get("items") or [], target)
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                await self._projected(source, target)

    async def _projected(self, source: Obj, target: Path) -> None:
        if "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            token = await self.request_token(
                token_source.get("audience"), int(token_source.get("expirationSeconds", 3600))
            )
            _write(target / token_source["path"], token)
        elif "configMap" in source:
            await self._key_files("configmaps", source["configMap"], target)
        elif "secret" in source:
            await self._key_files("secrets", source["secret"], target)
        elif "downwardAPI" in source:
            self._downward(source["downwardAPI"].get("items") or [], target)

    async def _key_files(self, plural: str, source: Obj, target: Path) -> None:
        obj = await self._get(plural, source["name"])
        if obj is None:
            if source.get("optional"):
                return
            kind = "configmap" if plural == "configmaps" else "secret"
            raise SandboxError(f'{kind} "{source["name"]}" not found')
        data = _data(obj, plural)
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise SandboxError(f"key {item['key']!r} not found in {plural} {source['name']!r}")
            _write(target / item["path"], data[item["key"]])

    def _downward(self, items: list[Obj], target: Path) -> None:
        for item in items:
            if "fieldRef" in item:
                _write(target / item["path"], field_value(self.pod, item["fieldRef"]["fieldPath"]))

    async def environment(self, container: Obj) -> dict[str, str]:
        """The container's environment: the kubelet's service variables, envFrom, env (with
        $(VAR) expansion), and the twin's two sandbox variables."""
        network = self.settings.network
        api_ip = network.service_ip(1)
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOSTNAME": self.pod["metadata"]["name"],
            "HOME": "/root",
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": api_ip,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": f"tcp://{api_ip}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{api_ip}:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": api_ip,
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for plural, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if field in source:
                    obj = await self._get(plural, source[field]["name"])
                    if obj is None and not source[field].get("optional"):
                        raise SandboxError(f"{plural} {source[field]['name']!r} not found")
                    for key, value in _data(obj or {}, plural).items():
                        env[prefix + key] = value
        for variable in container.get("env") or []:
            if "valueFrom" in variable:
                value = await self._value_from(variable["valueFrom"])
                if value is None:
                    continue
                env[variable["name"]] = value
            else:
                env[variable["name"]] = expand(variable.get("value", ""), env)
        env["CLUSTERGATE_ROOT"] = str(self.root)
        env["CLUSTERGATE_NETMAP"] = str(self.netmap_path)
        return env

    async def _value_from(self, source: Obj) -> str | None:
        if "fieldRef" in source:
            return field_value(self.pod, source["fieldRef"]["fieldPath"])
        for plural, field in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
            if field in source:
                ref = source[field]
                obj = await self._get(plural, ref["name"])
                data = _data(obj or {}, plural)
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise SandboxError(
                        f"couldn't find key {ref['key']} in {plural[:-1]} "
                        f"{self.pod['metadata']['namespace']}/{ref['name']}"
                    )
                return data[ref["key"]]
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, _, resource = ref["resource"].partition(".")
            container = next(
                (c for c in self._all_containers() if c["name"] == ref.get("containerName")),
                None,
            )
            resources = (container or {}).get("resources") or {}
            return str((resources.get(kind) or {}).get(resource, "0"))
        return None


def _data(obj: Obj, plural: str) -> dict[str, str]:
    if plural == "secrets":
        decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        decoded.update(obj.get("stringData") or {})
        return decoded
    binary = {
        k: base64.b64decode(v).decode(errors="replace")
        for k, v in (obj.get("binaryData") or {}).items()
    }
    return {**(obj.get("data") or {}), **binary}


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def command_line(container: Obj, env: dict[str, str], python: str) -> list[str]:
    """argv for a probe-image container: its command and args with $(VAR) expanded; ``python``
    stands for the image's interpreter, and the image entrypoint is ``python -m
    clustergate.probe``."""
    command = [expand(part, env) for part in container.get("command") or []]
    args = [expand(part, env) for part in container.get("args") or []]
    if not command:
        command = ["python", "-m", "clustergate.probe"]
    if os.path.basename(command[0]).startswith("python"):
        command = [python, *command[1:]]
    return [*command, *args]
