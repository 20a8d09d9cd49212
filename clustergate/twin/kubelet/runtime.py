"""Containers as the twin's kubelet runs them: real local processes for the probe image, the
twin's add-on runtimes for add-on images, and simulated containers for everything else.
Process output goes to CRI-format log files (``<RFC3339Nano> <stream> F <line>``), as
containerd writes them, which the kubelet serves."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from clustergate.twin.addons import AddonRuntime
from clustergate.twin.controllers.objects import Obj, timestamp
from clustergate.twin.kubelet_hub import LogOptions

PROBE_REPOSITORY_SUFFIX = "clustergate-probe"


def is_probe_image(image: str) -> bool:
    """Any image whose repository ends with ``clustergate-probe`` (tag or digest aside)."""
    return _repository(image).rsplit("/", 1)[-1] == PROBE_REPOSITORY_SUFFIX


def _repository(image: str) -> str:
    """The image reference without tag or digest."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def image_id(image: str) -> str:
    """A content-addressed image reference, as containerd reports the image it ran."""
    repository = _repository(image)
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{repository}@sha256:{digest}"


def _cri_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Container:
    """One container's runtime state, reported in the pod's containerStatuses."""

    spec: Obj
    kind: str  # "process" | "addon" | "simulated"
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    container_id: str = ""
    log_files: list[Path] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    addon: AddonRuntime | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return "running" in self.state

    def status(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": image_id(self.spec.get("image", "")),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    def mark_running(self) -> None:
        self.container_id = f"containerd://{secrets.token_hex(32)}"
        self.state = {"running": {"startedAt": timestamp()}}

    def mark_terminated(self, exit_code: int, reason: str | None = None) -> None:
        started = (self.state.get("running") or {}).get("startedAt", timestamp())
        self.ready = False
        self.state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": started,
                "finishedAt": timestamp(),
                **({"containerID": self.container_id} if self.container_id else {}),
            }
        }

    def new_log_file(self, logs_dir: Path) -> Path:
        path = logs_dir / self.name / f"{self.restart_count}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self.log_files.append(path)
        return path

    def write_log(self, stream: str, text: str) -> None:
        """One line in the current log file, as containerd writes a process's output."""
        if self.log_files:
            with self.log_files[-1].open("a") as handle:
                handle.write(f"{_cri_time()} {stream} F {text}\n")

    async def start_process(
        self, argv: list[str], env: dict[str, str], cwd: Path, logs: Path
    ) -> None:
        log_file = self.new_log_file(logs)
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        handle = log_file.open("a", buffering=1)
        streams = (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        self.pumps = [
            asyncio.create_task(_pump(reader, name, handle)) for name, reader in streams if reader
        ]
        self.mark_running()

    async def wait_process(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        self.pumps = []
        return code

    async def kill(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (the pod's termination grace)."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), max(grace, 0.05))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        for pump in self.pumps:
            pump.cancel()
        if self.addon is not None:
            addon, self.addon = self.addon, None
            await addon.stop()


async def _pump(reader: asyncio.StreamReader, stream: str, handle: TextIO) -> None:
    write = handle.write
    while True:
        line = await reader.readline()
        if not line:
            break
        text = line.decode(errors="replace")
        tag = "F" if text.endswith("\n") else "P"
        write(f"{_cri_time()} {stream} {tag} {text.rstrip(chr(10))}\n")


def _parse_cri(line: str) -> tuple[str, str, bool]:
    """(timestamp, content, ends a line) of one CRI log line."""
    stamp, _, rest = line.rstrip("\n").partition(" ")
    _, _, rest = rest.partition(" ")
    tag, _, content = rest.partition(" ")
    return stamp, content, tag != "P"


def _render(lines: list[str], options: LogOptions) -> bytes:
    out = []
    for line in lines:
        stamp, content, full = _parse_cri(line)
        text = f"{stamp} {content}" if options.timestamps else content
        out.append(text + ("\n" if full else ""))
    return "".join(out).encode()


async def read_logs(
    container: Container, options: LogOptions, still_running: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """The container's log as ``kubectl logs`` shows it; with follow, until it terminates.
    ``still_running`` says whether more output may come."""
    files = container.log_files
    if options.previous:
        if len(files) < 2:
            return
        path = files[-2]
    elif files:
        path = files[-1]
    else:
        return
    sent = 0
    with path.open() as handle:
        lines = handle.readlines()
        if options.tail_lines is not None:
            lines = lines[-options.tail_lines :] if options.tail_lines > 0 else []
        chunk = _render(lines, options)
        while True:
            if options.limit_bytes is not None:
                chunk = chunk[: max(0, options.limit_bytes - sent)]
            if chunk:
                sent += len(chunk)
                yield chunk
            if options.limit_bytes is not None and sent >= options.limit_bytes:
                return
            if not options.follow or options.previous:
                return
            if not still_running():
                rest = handle.readlines()
                if rest:
                    yield _render(rest, options)
                return
            await asyncio.sleep(0.1)
            chunk = _render(handle.readlines(), options)


class ProcessExec:
    """An exec'd command (kubelet_hub.ExecProcess) over a local subprocess."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], cwd: Path) -> ProcessExec:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(process)

    async def write_stdin(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await self._process.stdin.drain()

    async def close_stdin(self) -> None:
        assert self._process.stdin is not None
        if not self._process.stdin.is_closing():
            self._process.stdin.close()

    async def _chunks(self, reader: asyncio.StreamReader | None) -> AsyncIterator[bytes]:
        if reader is None:
            return
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            yield chunk

    def stdout(self) -> AsyncIterator[bytes]:
        return self._chunks(self._process.stdout)

    def stderr(self) -> AsyncIterator[bytes]:
        return self._chunks(self._process.stderr)

    async def wait(self) -> int:
        return await self._process.wait()

    async def resize(self, width: int, height: int) -> None:
        """No terminal is allocated for exec'd commands in the twin; nothing to resize."""

    async def kill(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()
