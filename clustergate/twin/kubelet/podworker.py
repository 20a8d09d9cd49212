"""One pod's life on a node: sandbox, init containers, containers, readiness, restarts,
status reports and graceful deletion, as the kubelet's pod worker drives them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from functools import partial
from typing import TYPE_CHECKING

from clustergate.twin.addons import PodPlacement
from clustergate.twin.controllers.objects import (
    Obj,
    is_terminating,
    pod_finished,
    set_condition,
    timestamp,
)
from clustergate.twin.kubeclient import ApiError, resource_path
from clustergate.twin.kubelet.runtime import Container, is_probe_image
from clustergate.twin.kubelet.sandbox import Sandbox, SandboxError, command_line

if TYPE_CHECKING:
    from clustergate.twin.kubelet.kubelet import Kubelet

log = logging.getLogger(__name__)

#: Crash-loop back-off: first wait and cap (the kubelet's are 10 s and 5 min).
_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0
_DELETE_ATTEMPTS = 10


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj, pod_ip: str) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.pod_ip = pod_ip
        self.sandbox = Sandbox(kubelet.settings, kubelet.client, pod)
        spec = pod["spec"]
        self.init_containers = [
            Container(c, self._kind(c), init=True) for c in spec.get("initContainers") or []
        ]
        self.containers = [Container(c, self._kind(c)) for c in spec.get("containers") or []]
        self.envs: dict[str, dict[str, str]] = {}
        self.phase = "Pending"
        self.conditions = _initial_conditions(pod)
        self.start_time = timestamp()
        self.uses_sandbox = any(c.kind == "process" for c in self.init_containers + self.containers)
        self._terminating = asyncio.Event()
        self._status_lock = asyncio.Lock()
        self.status_pending = False
        self._task = asyncio.create_task(self._run(), name=f"pod {self.key}")

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    @property
    def path(self) -> str:
        meta = self.pod["metadata"]
        return resource_path("v1", "pods", meta["namespace"], meta["name"])

    def _kind(self, container: Obj) -> str:
        image = container.get("image", "")
        if is_probe_image(image):
            return "process"
        if self.kubelet.addons.factory_for(image) is not None:
            return "addon"
        return "simulated"

    def container(self, name: str) -> Container | None:
        everything = self.containers + self.init_containers
        if not name:
            return self.containers[0] if self.containers else None
        return next((c for c in everything if c.name == name), None)

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if is_terminating(pod):
            self._terminating.set()

    async def stop(self) -> None:
        """The pod is gone from the API (or the node stops): end everything, keep nothing."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._kill_all(0.0)
        self.sandbox.remove()

    # ---- the life of the pod

    async def _run(self) -> None:
        life = asyncio.create_task(self._life())
        ending = asyncio.create_task(self._terminating.wait())
        if is_terminating(self.pod):
            self._terminating.set()
        try:
            await asyncio.wait({life, ending}, return_when=asyncio.FIRST_COMPLETED)
            if not self._terminating.is_set():
                if life.exception() is not None:
                    log.error(
                        "pod %s: kubelet pod worker failed", self.key, exc_info=life.exception()
                    )
                await self._terminating.wait()
        finally:
            life.cancel()
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await life
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        await self._kill_all(grace)
        await self._delete()

    async def _delete(self) -> None:
        """The kubelet's last word on a pod: delete it with grace period 0 (until that lands)."""
        uid = self.pod["metadata"]["uid"]
        for attempt in range(_DELETE_ATTEMPTS):
            try:
                await self.kubelet.client.delete(self.path, grace_period_seconds=0, uid=uid)
                return
            except ApiError as error:
                if error.status == 409:  # another pod of that name: ours is gone
                    return
                log.warning("pod %s not deleted (attempt %d): %s", self.key, attempt + 1, error)
                await asyncio.sleep(min(_BACKOFF_MAX, _BACKOFF_START * 2**attempt))

    async def _life(self) -> None:
        if pod_finished(self.pod):
            return
        await self._report()
        delay = self.kubelet.start_delay
        started = asyncio.get_running_loop().time()
        if self.uses_sandbox:
            await self._prepare_sandbox()
        self.conditions = set_condition(
            self.conditions, "PodReadyToStartContainers", "True", "", ""
        )
        await asyncio.sleep(max(0.0, delay - (asyncio.get_running_loop().time() - started)))
        for container in self.init_containers:
            if not await self._run_to_completion(container):
                return
        self.conditions = set_condition(self.conditions, "Initialized", "True", "", "")
        supervisors = [asyncio.create_task(self._supervise(c)) for c in self.containers]
        try:
            await asyncio.gather(*supervisors)
        finally:
            for task in supervisors:
                task.cancel()
        codes = [(c.state.get("terminated") or {}).get("exitCode", 0) for c in self.containers]
        self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        await self._report()

    async def _prepare_sandbox(self) -> None:
        attempt = 0
        while True:
            try:
                self.sandbox.pod = self._with_status()
                await self.sandbox.prepare()
                self.kubelet.write_netmap_view(self)
                return
            except (SandboxError, ApiError) as error:
                attempt += 1
                if attempt == 1:
                    await self.kubelet.events.record(
                        {**self.pod, "apiVersion": "v1", "kind": "Pod"},
                        "Warning",
                        "FailedMount",
                        f"MountVolume.SetUp failed: {error}",
                    )
                await asyncio.sleep(min(_BACKOFF_MAX, _BACKOFF_START * 2**attempt))

    async def _start(self, container: Container) -> None:
        """Start the container (or fail, leaving it terminated with the reason)."""
        if container.kind == "process":
            self.sandbox.pod = self._with_status()
            try:
                env = await self.sandbox.environment(container.spec)
            except (SandboxError, ApiError) as error:
                container.mark_terminated(1, "CreateContainerConfigError")
                container.state["terminated"]["message"] = str(error)
                return
            self.envs[container.name] = env
            argv = command_line(container.spec, env, sys.executable)
            workdir = self.sandbox.path(container.spec.get("workingDir") or "/")
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                await container.start_process(argv, env, workdir, self.sandbox.logs_dir)
            except OSError as error:
                container.mark_terminated(128, "StartError")
                container.state["terminated"]["message"] = str(error)
            return
        container.new_log_file(self.sandbox.logs_dir)
        if container.kind == "addon":
            factory = self.kubelet.addons.factory_for(container.spec.get("image", ""))
            assert factory is not None
            runtime = factory(
                PodPlacement(
                    pod=self.pod,
                    node_name=self.kubelet.node_name,
                    node_ip=self.kubelet.spec.node_ip,
                    pod_ip=self.pod_ip,
                    log=partial(container.write_log, "stderr"),
                )
            )
            try:
                await runtime.start()
            except Exception as error:
                log.exception("add-on %s in pod %s did not start", container.name, self.key)
                container.mark_terminated(1, "Error")
                container.state["terminated"]["message"] = str(error)
                return
            container.addon = runtime
        container.mark_running()

    async def _run_to_completion(self, container: Container) -> bool:
        """An init container: run it until it succeeds; False if the pod failed."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            await self._start(container)
            await self._report()
            if container.process is not None and container.running:
                code = await container.wait_process()
                container.mark_terminated(code)
            elif container.running:
                container.mark_terminated(0)
            code = container.state["terminated"]["exitCode"]
            if code == 0:
                await self._report()
                return True
            if policy == "Never":
                self.phase = "Failed"
                await self._report()
                return False
            await self._back_off(container)

    async def _supervise(self, container: Container) -> None:
        """Run a container for as long as its restart policy says."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            await self._start(container)
            if container.running:
                self.phase = "Running"
                await self._report()
                await self._become_ready(container)
            if container.process is not None and container.running:
                code = await container.wait_process()
                container.mark_terminated(code)
            elif container.running:
                await asyncio.Event().wait()  # simulated and add-on containers run until stopped
            code = container.state["terminated"]["exitCode"]
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                await self._report()
                return
            await self._back_off(container)

    async def _become_ready(self, container: Container) -> None:
        probe = container.spec.get("readinessProbe") or {}
        wait = float(probe.get("initialDelaySeconds", 0))
        if wait:
            await asyncio.sleep(wait)
        if container.running:
            container.ready = True
            await self._report()

    async def _back_off(self, container: Container) -> None:
        container.last_state = container.state
        container.restart_count += 1
        delay = min(_BACKOFF_MAX, _BACKOFF_START * 2 ** (container.restart_count - 1))
        container.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={container.name} "
                f"pod={self.pod['metadata']['name']}_{self.pod['metadata']['namespace']}"
                f"({self.pod['metadata']['uid']})",
            }
        }
        container.process = None
        await self._report()
        await asyncio.sleep(delay)

    async def _kill_all(self, grace: float) -> None:
        await asyncio.gather(
            *(c.kill(grace) for c in self.init_containers + self.containers),
            return_exceptions=True,
        )

    # ---- status

    def _with_status(self) -> Obj:
        """The pod as the downward API sees it: with the IPs this kubelet gave it."""
        return {**self.pod, "status": {**(self.pod.get("status") or {}), **self.status()}}

    def status(self) -> Obj:
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        finished = self.phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if finished else ("" if ready else "ContainersNotReady")
        not_ready = [c.name for c in self.containers if not c.ready]
        message = (
            "" if ready or finished else f"containers with unready status: [{' '.join(not_ready)}]"
        )
        conditions = set_condition(
            self.conditions, "ContainersReady", "True" if ready else "False", reason, message
        )
        conditions = set_condition(
            conditions, "Ready", "True" if ready else "False", reason, message
        )
        self.conditions = conditions
        host_ip = self.kubelet.spec.node_ip
        status: Obj = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return status

    async def _report(self) -> None:
        """Send the pod's status; when the API fails, the kubelet's housekeeping sends it
        again later (as the kubelet's status manager resyncs), so the pod's life goes on."""
        async with self._status_lock:
            try:
                await self.kubelet.client.patch_status(self.path, {"status": self.status()})
                self.status_pending = False
            except ApiError as error:
                self.status_pending = error.status != 404
                if self.status_pending:
                    log.warning("status of pod %s not sent: %s", self.key, error)

    async def resync_status(self) -> None:
        if self.status_pending and not self._terminating.is_set():
            await self._report()


def _initial_conditions(pod: Obj) -> list[Obj]:
    """The pod conditions in the order the kubelet reports them, the scheduler's kept."""
    conditions: list[Obj] = []
    for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
        conditions = set_condition(conditions, kind, "False", "", "")
    scheduled = [
        c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"
    ]
    return conditions + scheduled
