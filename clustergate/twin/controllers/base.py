"""What every in-twin controller shares: informers, a work queue and a reconcile loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from clustergate.twin.kubeclient import ApiError, Informer, KubeClient
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

ClientFactory = Callable[[], KubeClient]


class WorkQueue:
    """Keys to reconcile, each at most once in the queue and never handled twice at once."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._active: set[str] = set()
        self._requeue: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key in self._active:
            self._requeue.add(key)
            return
        if key not in self._dirty:
            self._dirty.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        timer = self._timers.get(key)
        due = asyncio.get_running_loop().time() + delay
        if timer is not None and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._active.add(key)
        return key

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._requeue:
            self._requeue.discard(key)
            self.add(key)

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class SharedInformers:
    """One informer per collection, shared by the controllers of one manager process, as
    kube-controller-manager's SharedInformerFactory does."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._informers: dict[tuple[str, str | None, str | None], Informer] = {}

    def get(
        self, path: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> Informer:
        key = (path, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                self.client, path, label_selector=label_selector, field_selector=field_selector
            )
            self._informers[key] = informer
        return informer

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def synced(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(i.synced(timeout) for i in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))


class Controller:
    """A reconcile loop over keys. Subclasses register informer handlers in ``__init__``
    (enqueueing keys) and implement :meth:`reconcile`; a failed reconcile is retried with
    backoff, a conflict (409) at once."""

    name = "controller"
    workers = 1
    #: Every key is reconciled again this often, as informers' resync does.
    resync_seconds = 30.0

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        self.settings = settings
        self.client = client
        self.informers = informers
        self.queue = WorkQueue()
        self._failures: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every key to reconcile on resync."""
        return []

    async def run(self) -> None:
        """Reconcile until cancelled (or :meth:`stop`)."""
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._resync()))
        try:
            await asyncio.gather(*self._tasks)
        finally:
            self.queue.cancel_timers()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for key in self.keys():
                self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 409:
                    self.queue.add_after(key, 0.05)
                else:
                    self._retry(key, error)
            except Exception as error:
                self._retry(key, error)
            finally:
                self.queue.done(key)

    def _retry(self, key: str, error: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        log.warning("%s: reconciling %s failed (%s), attempt %d", self.name, key, error, failures)
        self.queue.add_after(key, min(0.1 * 2**failures, 10.0))
