"""Waiting until something holds: one way, with a deadline and a message that helps.

Waits on Kubernetes objects use a list followed by a watch from the list's resourceVersion (a
relist on 410 Gone), so the condition is re-checked on every change rather than every few
seconds. What cannot be watched (AWS state, a DNS answer) uses :func:`poll_until`, a bounded
poll. Either way a timeout raises :class:`WaitTimeout` saying what was awaited, what was seen
last and for how long; long waits log a progress line every ``progress_every_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("clustergate.wait")
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A wait ran past its deadline. An AssertionError, so pytest shows it as a check failure."""


@dataclass
class _Progress:
    what: str
    started: float
    every: float
    last_report: float = 0.0
    last_seen: str = "nothing yet"
    seen_at: float = 0.0

    def saw(self, description: str) -> None:
        now = time.monotonic()
        if description != self.last_seen:
            self.last_seen, self.seen_at = description, now
        if now - max(self.last_report, self.started) >= self.every:
            self.last_report = now
            log.info("still waiting for %s (%.0fs): %s", self.what, now - self.started, description)

    def timeout(self, timeout_s: float) -> WaitTimeout:
        now = time.monotonic()
        held = f" (unchanged for {now - self.seen_at:.0f}s)" if self.seen_at else ""
        return WaitTimeout(
            f"timed out after {timeout_s:.0f}s waiting for {self.what}; "
            f"last seen: {self.last_seen}{held}"
        )


def poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float,
    describe: Callable[[T], str] = repr,
    interval_s: float = 1.0,
    progress_every_s: float = 10.0,
) -> T:
    """Call ``fetch`` every ``interval_s`` until ``done(value)``; return that value."""
    progress = _Progress(what, time.monotonic(), progress_every_s)
    deadline = progress.started + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        progress.saw(describe(value))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise progress.timeout(timeout_s)
        time.sleep(min(interval_s, remaining))


def wait_for_objects(
    list_fn: Callable[..., Any],
    done: Callable[[list[Any]], bool],
    *,
    what: str,
    timeout_s: float,
    describe: Callable[[list[Any]], str],
    progress_every_s: float = 10.0,
    **list_kwargs: Any,
) -> list[Any]:
    """Watch the objects ``list_fn(**list_kwargs)`` returns until ``done(objects)`` holds.

    ``list_fn`` is a list call of the official client (``core.list_namespaced_pod``);
    ``list_kwargs`` its namespace and selectors. Returns the objects that satisfied ``done``.
    """
    progress = _Progress(what, time.monotonic(), progress_every_s)
    deadline = progress.started + timeout_s
    while True:
        listed = list_fn(**list_kwargs)
        objects = {_key(item): item for item in listed.items}
        if done(list(objects.values())):
            return list(objects.values())
        progress.saw(describe(list(objects.values())))
        version = listed.metadata.resource_version
        try:
            for item in _watch(list_fn, version, deadline, list_kwargs):
                kind, obj = item
                if kind == "DELETED":
                    objects.pop(_key(obj), None)
                else:
                    objects[_key(obj)] = obj
                current = list(objects.values())
                if done(current):
                    return current
                progress.saw(describe(current))
        except ApiException as error:
            if error.status != 410:
                raise
            continue
        if time.monotonic() >= deadline:
            raise progress.timeout(timeout_s)


def _watch(
    list_fn: Callable[..., Any], version: str, deadline: float, list_kwargs: dict[str, Any]
) -> Iterable[tuple[str, Any]]:
    stream = watch.Watch()
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            for event in stream.stream(
                list_fn,
                resource_version=version,
                timeout_seconds=max(1, int(min(remaining, 30))),
                allow_watch_bookmarks=True,
                **list_kwargs,
            ):
                if event["type"] == "ERROR":
                    raw = event.get("raw_object") or {}
                    raise ApiException(status=raw.get("code", 500), reason=raw.get("message"))
                version = stream.resource_version or version
                if event["type"] == "BOOKMARK":
                    continue
                yield event["type"], event["object"]
                if time.monotonic() >= deadline:
                    return
    finally:
        stream.stop()


def _key(obj: Any) -> tuple[str, str]:
    return obj.metadata.namespace or "", obj.metadata.name
