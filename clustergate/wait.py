"""Waiting until something holds: one way, with a deadline and a message that helps.

Waits on Kubernetes objects use a list followed by a watch from the list's resourceVersion (a
relist on 410 Gone), so the condition is re-checked on every change rather than every few
seconds. What cannot be watched (AWS state, a DNS answer) uses :func:`poll_until`, a bounded
poll. Either way a timeout raises :class:`WaitTimeout` saying what was awaited, what was seen
last and for how long. A long wait says what it awaits, what it sees now and how much of its
time is gone every ``progress_every_s`` (at most :data:`clustergate.progress.EVERY_S`), also
while nothing changes, and once more when it is over (``clustergate.progress`` takes the lines
to the terminal). Time comes from a :class:`Clock`, so the lines can be tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from clustergate import progress as progress_lines

T = TypeVar("T")
#: How often a wait says what it sees unless its caller asks for another interval (seconds).
PROGRESS_EVERY_S = 15.0


class WaitTimeout(AssertionError):
    """A wait ran past its deadline. An AssertionError, so pytest shows it as a check failure."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


SYSTEM_CLOCK: Clock = _SystemClock()


@dataclass
class _Progress:
    what: str
    timeout_s: float
    every: float
    clock: Clock
    started: float = field(init=False)
    last_report: float = field(init=False)
    reported: bool = False
    last_seen: str = "nothing yet"
    seen_at: float = 0.0

    def __post_init__(self) -> None:
        self.every = min(self.every, progress_lines.EVERY_S)
        self.started = self.last_report = self.clock.monotonic()

    @property
    def deadline(self) -> float:
        return self.started + self.timeout_s

    def saw(self, description: str) -> None:
        """What the wait sees now; says so when a line is due."""
        if description != self.last_seen:
            self.last_seen, self.seen_at = description, self.clock.monotonic()
        self.tick()

    def tick(self) -> None:
        """Say what was seen last if a line is due, also when nothing changed."""
        now = self.clock.monotonic()
        if now - self.last_report >= self.every:
            self.last_report, self.reported = now, True
            progress_lines.say(
                progress_lines.wait_line(
                    self.what, self.last_seen, now - self.started, self.timeout_s
                )
            )

    def due_in(self) -> float:
        return max(0.0, self.last_report + self.every - self.clock.monotonic())

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, saying what was seen last whenever a line falls due."""
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 0:
            self.clock.sleep(min(left, self.due_in() or self.every))
            self.tick()

    def done(self) -> None:
        """After a wait that said anything, say that it is over."""
        if self.reported:
            elapsed = progress_lines.span(self.clock.monotonic() - self.started)
            progress_lines.say(f"done waiting for {self.what} after {elapsed}")

    def timeout(self) -> WaitTimeout:
        now = self.clock.monotonic()
        held = f" (unchanged for {now - self.seen_at:.0f}s)" if self.seen_at else ""
        return WaitTimeout(
            f"timed out after {self.timeout_s:.0f}s waiting for {self.what}; "
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
    progress_every_s: float = PROGRESS_EVERY_S,
    clock: Clock = SYSTEM_CLOCK,
) -> T:
    """Call ``fetch`` every ``interval_s`` until ``done(value)``; return that value.

    ``describe(value)`` says what the wait sees now, on progress lines and in the timeout."""
    progress = _Progress(what, timeout_s, progress_every_s, clock)
    while True:
        value = fetch()
        if done(value):
            progress.done()
            return value
        progress.saw(describe(value))
        remaining = progress.deadline - clock.monotonic()
        if remaining <= 0:
            raise progress.timeout()
        progress.sleep(min(interval_s, remaining))


def wait_for_objects(
    list_fn: Callable[..., Any],
    done: Callable[[list[Any]], bool],
    *,
    what: str,
    timeout_s: float,
    describe: Callable[[list[Any]], str],
    progress_every_s: float = PROGRESS_EVERY_S,
    **list_kwargs: Any,
) -> list[Any]:
    """Watch the objects ``list_fn(**list_kwargs)`` returns until ``done(objects)`` holds.

    ``list_fn`` is a list call of the official client (``core.list_namespaced_pod``);
    ``list_kwargs`` its namespace and selectors. Returns the objects that satisfied ``done``.
    ``describe(objects)`` says what the wait sees now, on progress lines and in the timeout.
    """
    progress = _Progress(what, timeout_s, progress_every_s, SYSTEM_CLOCK)
    while True:
        listed = list_fn(**list_kwargs)
        objects = {_key(item): item for item in listed.items}
        if done(list(objects.values())):
            progress.done()
            return list(objects.values())
        progress.saw(describe(list(objects.values())))
        version = listed.metadata.resource_version
        try:
            for kind, obj in _watch(list_fn, version, progress, list_kwargs):
                if kind == "DELETED":
                    objects.pop(_key(obj), None)
                elif kind != _QUIET:
                    objects[_key(obj)] = obj
                current = list(objects.values())
                if done(current):
                    progress.done()
                    return current
                progress.saw(describe(current))
        except ApiException as error:
            if error.status != 410:
                raise
            continue
        if time.monotonic() >= progress.deadline:
            raise progress.timeout()


#: What :func:`_watch` yields when a watch request ended with no change: time to say so.
_QUIET = "QUIET"


def _watch(
    list_fn: Callable[..., Any], version: str, progress: _Progress, list_kwargs: dict[str, Any]
) -> Iterable[tuple[str, Any]]:
    """Changes to the listed objects until the deadline. Each watch request lasts until the
    next progress line is due, so that a wait on objects that do not change still says so."""
    stream = watch.Watch()
    try:
        while (remaining := progress.deadline - time.monotonic()) > 0:
            lasts = min(remaining, progress.due_in() or progress.every)
            for event in stream.stream(
                list_fn,
                resource_version=version,
                timeout_seconds=max(1, int(lasts)),
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
                if time.monotonic() >= progress.deadline:
                    return
            yield _QUIET, None
    finally:
        stream.stop()


def _key(obj: Any) -> tuple[str, str]:
    return obj.metadata.namespace or "", obj.metadata.name
