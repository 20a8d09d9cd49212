"""Object storage with etcd's semantics: one global resourceVersion counter, a bounded history
of changes for watch resumption, and watchers indexed so that a change is only tested against
the watches that can want it (a kubelet's ``spec.nodeName=<node>`` watch sees its node's pods)."""

from __future__ import annotations

import asyncio
import bisect
import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

#: A watch is closed when this many events wait for it unread (a stuck client), as the real
#: API server drops watchers whose buffer fills.
WATCH_BUFFER = 100_000


def node_of(obj: Obj | None) -> str | None:
    if obj is None:
        return None
    return (obj.get("spec") or {}).get("nodeName") or ""


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class Event:
    """One change; its encoded watch lines are built once and shared by every watcher."""

    __slots__ = ("_lines", "obj", "old", "resource", "rv", "type")

    def __init__(self, rv: int, resource: str, type_: str, obj: Obj, old: Obj | None) -> None:
        self.rv = rv
        self.resource = resource
        self.type = type_
        self.obj = obj
        self.old = old
        self._lines: dict[tuple[str, int], bytes] = {}

    @property
    def nodes(self) -> set[str]:
        """The nodes whose node-scoped watches may want this change (bound before or after;
        "" for unbound, which a spec.nodeName= watch asks for)."""
        return {node for node in (node_of(self.obj), node_of(self.old)) if node is not None}

    def line(self, type_: str, view: Callable[[Obj], Obj] | None) -> bytes:
        cache_key = (type_, id(view))
        line = self._lines.get(cache_key)
        if line is None:
            obj = view(self.obj) if view else self.obj
            line = orjson.dumps({"type": type_, "object": obj}) + b"\n"
            self._lines[cache_key] = line
        return line


@dataclass(eq=False)
class Watcher:
    resource: str
    matches: Callable[[Obj], bool]
    view: Callable[[Obj], Obj] | None
    node: str | None = None
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        new_match = self.matches(event.obj)
        old_match = event.old is not None and self.matches(event.old)
        if event.type == "DELETED":
            type_ = "DELETED" if new_match or old_match else None
        elif event.type == "ADDED":
            type_ = "ADDED" if new_match else None
        elif new_match:
            type_ = "MODIFIED" if old_match else "ADDED"
        else:
            type_ = "DELETED" if old_match else None
        if type_ is not None:
            self.push(event.line(type_, self.view))

    def push(self, line: bytes | None) -> None:
        if self.queue.qsize() >= WATCH_BUFFER:
            self.close()
            return
        self.queue.put_nowait(line)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class Store:
    def __init__(self, history: int = 50_000) -> None:
        self.revision = 1
        self._objects: dict[str, dict[Key, Obj]] = {}
        self._keys: dict[str, list[Key]] = {}
        self._by_node: dict[str, dict[str, set[Key]]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 1
        self._watchers: dict[str, set[Watcher]] = {}
        self._node_watchers: dict[str, dict[str, set[Watcher]]] = {}

    # ---- reads

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get(resource, {}).get((namespace, name))

    def count(self, resource: str) -> int:
        return len(self._objects.get(resource, {}))

    def scan(
        self,
        resource: str,
        namespace: str = "",
        after: Key | None = None,
        node: str | None = None,
    ) -> Iterator[Obj]:
        """Objects in key order, optionally of one namespace, after a key, on a node."""
        objects = self._objects.get(resource, {})
        if node is not None:
            keys = sorted(self._by_node.get(resource, {}).get(node, ()))
        else:
            keys = self._keys.get(resource, [])
        start = 0
        if after is not None:
            start = bisect.bisect_right(keys, after)
        if namespace:
            start = max(start, bisect.bisect_left(keys, (namespace, "")))
        for index in range(start, len(keys)):
            key = keys[index]
            if namespace and key[0] != namespace:
                break
            obj = objects.get(key)
            if obj is not None:
                yield obj

    def scan_at(
        self,
        resource: str,
        revision: int,
        namespace: str = "",
        after: Key | None = None,
        node: str | None = None,
    ) -> Iterator[Obj]:
        """scan() as the store was at ``revision``, which must not be compacted (too_old):
        the current objects with the history since ``revision`` undone."""
        before = self._before(resource, revision)
        if not before:
            yield from self.scan(resource, namespace, after, node)
            return

        def in_scan(key: Key, obj: Obj | None) -> bool:
            return (
                obj is not None
                and (after is None or key > after)
                and (not namespace or key[0] == namespace)
                and (node is None or node_of(obj) == node)
            )

        def current() -> Iterator[tuple[Key, Obj]]:
            for obj in self.scan(resource, namespace, after, node):
                key = key_of(obj)
                then = before.get(key, obj)
                if then is not None and in_scan(key, then):
                    yield key, then

        gone_since = sorted(
            (
                (key, old)
                for key, old in before.items()
                if old is not None
                and in_scan(key, old)
                and not in_scan(key, self.get(resource, *key))
            ),
            key=lambda item: item[0],
        )
        for _, obj in heapq.merge(current(), gone_since, key=lambda item: item[0]):
            yield obj

    def _before(self, resource: str, revision: int) -> dict[Key, Obj | None]:
        """For each key of ``resource`` changed after ``revision``: its object then (None
        when it did not exist yet)."""
        before: dict[Key, Obj | None] = {}
        for event in self._events_after(revision):
            if event.resource == resource:
                key = key_of(event.obj)
                if key not in before:
                    before[key] = None if event.type == "ADDED" else event.old
        return before

    def remaining_after(self, resource: str, after: Key, namespace: str = "") -> int:
        """Keys after ``after``, within ``namespace`` when one is given."""
        keys = self._keys.get(resource, [])
        end = bisect.bisect_left(keys, (namespace + "\0",)) if namespace else len(keys)
        return end - bisect.bisect_right(keys, after)

    # ---- writes

    def _next(self) -> str:
        self.revision += 1
        return str(self.revision)

    def add(self, resource: str, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = self._next()
        key = key_of(obj)
        self._objects.setdefault(resource, {})[key] = obj
        bisect.insort(self._keys.setdefault(resource, []), key)
        self._index_node(resource, key, None, obj)
        self._emit(resource, "ADDED", obj, None)
        return obj

    def replace(self, resource: str, obj: Obj) -> Obj:
        key = key_of(obj)
        old = self._objects[resource][key]
        obj["metadata"]["resourceVersion"] = self._next()
        self._objects[resource][key] = obj
        self._index_node(resource, key, old, obj)
        self._emit(resource, "MODIFIED", obj, old)
        return obj

    def remove(self, resource: str, obj: Obj) -> Obj:
        key = key_of(obj)
        old = self._objects[resource].pop(key)
        keys = self._keys[resource]
        del keys[bisect.bisect_left(keys, key)]
        self._index_node(resource, key, old, None)
        gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": self._next()}}
        self._emit(resource, "DELETED", gone, old)
        return gone

    def _index_node(self, resource: str, key: Key, old: Obj | None, new: Obj | None) -> None:
        if resource != "pods":
            return
        index = self._by_node.setdefault(resource, {})
        before, after = node_of(old), node_of(new)
        if before == after:
            return
        if before is not None:
            index.get(before, set()).discard(key)
        if after is not None:
            index.setdefault(after, set()).add(key)

    # ---- watch

    def _emit(self, resource: str, type_: str, obj: Obj, old: Obj | None) -> None:
        event = Event(self.revision, resource, type_, obj, old)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        targets: set[Watcher] = set(self._watchers.get(resource, ()))
        by_node = self._node_watchers.get(resource)
        if by_node:
            for node in event.nodes:
                targets.update(by_node.get(node, ()))
        for watcher in targets:
            watcher.offer(event)

    def compact(self) -> None:
        """Forget every revision before the current one, as an etcd compaction does: lists
        continued from, and watches resumed at, an earlier revision then answer 410."""
        self._history.clear()
        self._compacted = self.revision

    def too_old(self, revision: int) -> bool:
        return revision < self._compacted

    def watch(self, watcher: Watcher, since: int | None) -> None:
        """Register ``watcher``; replay history after ``since`` (exclusive) when given."""
        if since is not None:
            for event in self._events_after(since):
                if event.resource == watcher.resource and (
                    watcher.node is None or watcher.node in event.nodes
                ):
                    watcher.offer(event)
        if watcher.node is not None:
            index = self._node_watchers.setdefault(watcher.resource, {})
            index.setdefault(watcher.node, set()).add(watcher)
        else:
            self._watchers.setdefault(watcher.resource, set()).add(watcher)

    def _events_after(self, since: int) -> list[Event]:
        newer: list[Event] = []
        for event in reversed(self._history):
            if event.rv <= since:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        if watcher.node is not None:
            self._node_watchers.get(watcher.resource, {}).get(watcher.node, set()).discard(watcher)
        else:
            self._watchers.get(watcher.resource, set()).discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()
        for by_node in self._node_watchers.values():
            for watchers in by_node.values():
                for watcher in watchers:
                    watcher.close()
