"""Field ownership as k8s.io/apiserver's fieldmanager keeps it: metadata.managedFields, server-
side apply (merge, conflicts, force, pruning of what an applier stopped applying) and the
Update operations every other write records.

A field set is a set of paths; a path is a tuple of fieldsV1 elements (``f:spec``,
``k:{"name":"app"}``, ``v:"x"``), so a set encodes to fieldsV1 directly. Sets are computed as
structured-merge-diff computes them: an applier owns the leaves, list items and empty maps
of what it applied; an Update owns what it added or changed, intermediate maps it added
included (which fieldsV1 writes as ``.``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from clustergate.twin.apiserver import errors
from clustergate.twin.apiserver.list_types import BuiltinShape, Shape

Obj = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]
APPLY = "Apply"
UPDATE = "Update"
#: Where client-side apply keeps what it applied. kubectl's server-side apply (manager
#: "kubectl") may take over the fields named there without a conflict, and keeps it current.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"
_MISSING = object()
#: Fields nobody owns (fieldmanager's stripmeta): apiVersion, kind and these of metadata.
_STRIPPED_META = frozenset(
    f"f:{name}"
    for name in (
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    )
)
#: What the empty object of a kind holds before a create (its Go zero value: structs that are
#: not pointers), so that a create's Update does not own them as added maps.
ZERO_OBJECTS: dict[str, Obj] = {
    "Deployment": {"spec": {"strategy": {}, "template": {"metadata": {}, "spec": {}}}},
    "ReplicaSet": {"spec": {"template": {"metadata": {}, "spec": {}}}},
    "DaemonSet": {"spec": {"template": {"metadata": {}, "spec": {}}, "updateStrategy": {}}},
    "Job": {"spec": {"template": {"metadata": {}, "spec": {}}}},
    "Pod": {"spec": {}},
    "Service": {"spec": {}},
    "Node": {"spec": {}},
    "Namespace": {"spec": {}},
}


# ---- paths and sets


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _key_element(item: Any, keys: tuple[str, ...]) -> str:
    if not isinstance(item, dict):
        return f"v:{_json(item)}"
    return "k:" + _json({key: item[key] for key in keys if key in item})


def _list_elements(items: list[Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """element → item, for a set (keys ()) or a map list."""
    if not keys:
        return {f"v:{_json(item)}": item for item in items}
    return {_key_element(item, keys): item for item in items}


def _walk(value: Any, shape: Shape, path: Path, out: FieldSet, every: bool) -> None:
    """The paths under ``value``: leaves, list items and empty maps; ``every`` adds the maps
    and lists themselves."""
    if isinstance(value, dict) and value and not shape.atomic():
        if every and path:
            out.add(path)
        for name, child in value.items():
            _walk(child, shape.child(name), (*path, f"f:{name}"), out, every)
        return
    if isinstance(value, list):
        keys = shape.list_keys(value)
        if keys is not None:
            if every or not value:
                out.add(path)
            for element, item in _list_elements(value, keys).items():
                out.add((*path, element))
                if keys and isinstance(item, dict):
                    items = shape.items()
                    for name, child in item.items():
                        _walk(child, items.child(name), (*path, element, f"f:{name}"), out, every)
            return
    if path:
        out.add(path)


def _strip(paths: Iterable[Path]) -> FieldSet:
    return {path for path in paths if not _stripped(path)}


def _stripped(path: Path) -> bool:
    if path[0] == "f:metadata":
        return len(path) == 1 or path[1] in _STRIPPED_META
    return path[0] in ("f:apiVersion", "f:kind")


def applied_set(config: Obj, shape: Shape) -> FieldSet:
    """What an applier owns of what it applied."""
    out: FieldSet = set()
    _walk(config, shape, (), out, every=False)
    return _strip(out)


def every_path(obj: Obj, shape: Shape) -> FieldSet:
    out: FieldSet = set()
    _walk(obj, shape, (), out, every=True)
    return out


def changed(
    old: Any, new: Any, shape: Shape, path: Path = (), removed: FieldSet | None = None
) -> FieldSet:
    """Paths added or modified from ``old`` to ``new`` (structured-merge-diff's Compare);
    ``removed`` collects the paths ``new`` no longer has."""
    out: FieldSet = set()
    _changed(old, new, shape, path, out, set() if removed is None else removed)
    return _strip(out)


def _changed(old: Any, new: Any, shape: Shape, path: Path, out: FieldSet, gone: FieldSet) -> None:
    if new is _MISSING:
        gone.add(path)
        return
    if old is _MISSING:
        _walk(new, shape, path, out, every=True)
        return
    if isinstance(old, dict) and isinstance(new, dict) and not shape.atomic():
        for name, child in new.items():
            here = (*path, f"f:{name}")
            _changed(old.get(name, _MISSING), child, shape.child(name), here, out, gone)
        gone.update((*path, f"f:{name}") for name in old if name not in new)
        if not new and old and path:
            out.add(path)
        return
    if isinstance(old, list) and isinstance(new, list):
        keys = shape.list_keys(old + new)
        if keys is not None:
            before = _list_elements(old, keys)
            after = _list_elements(new, keys)
            items = shape.items()
            for element, item in after.items():
                here = (*path, element)
                if element not in before:
                    _walk(item, items, here, out, every=True)
                    out.add(here)
                elif keys and isinstance(item, dict) and isinstance(before[element], dict):
                    _changed(before[element], item, items, here, out, gone)
            gone.update((*path, element) for element in before if element not in after)
            return
    if old != new and path:
        if isinstance(old, dict | list):
            gone.add(path)
        if isinstance(new, dict | list):
            _walk(new, shape, path, out, every=True)
        out.add(path)


def _under(paths: FieldSet) -> Callable[[Path], bool]:
    """Whether a path is one of ``paths`` or below one."""
    if not paths:
        return lambda path: False
    return lambda path: any(path[:n] in paths for n in range(1, len(path) + 1))


# ---- fieldsV1


def encode(fields: FieldSet) -> Obj:
    tree: Obj = {}
    for path in fields:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}

    def tidy(node: Obj) -> Obj:
        if list(node) == ["."]:
            return {}
        return {key: tidy(node[key]) for key in sorted(node)}  # "." < "f:" < "k:" < "v:"

    return tidy(tree)


def decode(fields_v1: Any, prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    if not isinstance(fields_v1, dict):
        return out
    for element, sub in fields_v1.items():
        if element == ".":
            out.add(prefix)
        elif isinstance(sub, dict) and sub:
            out |= decode(sub, (*prefix, element))
        else:
            out.add((*prefix, element))
    return out


def path_string(path: Path) -> str:
    """How conflicts name a path: ``.spec.containers[name="app"].image``."""
    text = ""
    for element in path:
        kind, rest = element[0], element[2:]
        if kind == "f":
            text += f".{rest}"
        elif kind == "k":
            pairs = json.loads(rest)
            text += "[" + ",".join(f"{k}={_json(v)}" for k, v in pairs.items()) + "]"
        elif kind == "v":
            text += f"[={rest}]"
        else:
            text += f"[{rest}]"
    return text


# ---- managedFields entries


class Managers:
    """An object's managedFields, decoded: (manager, operation, subresource) → entry, set."""

    def __init__(self, entries: Any) -> None:
        self.entries: dict[tuple[str, str, str], Obj] = {}
        self.sets: dict[tuple[str, str, str], FieldSet] = {}
        #: entries whose set changed since they were decoded
        self.dirty: set[tuple[str, str, str]] = set()
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not entry.get("manager"):
                continue
            key = (entry["manager"], entry.get("operation", UPDATE), entry.get("subresource", ""))
            self.entries[key] = entry
            self.sets[key] = decode(entry.get("fieldsV1"))

    def take(self, key: tuple[str, str, str], fields: FieldSet) -> None:
        """Every other manager loses ``fields``."""
        for other, owned in self.sets.items():
            if other != key and owned & fields:
                owned -= fields
                self.dirty.add(other)

    def set(self, key: tuple[str, str, str], fields: FieldSet, api_version: str, now: str) -> None:
        manager, operation, subresource = key
        entry: Obj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
        }
        if subresource:
            entry["subresource"] = subresource
        self.entries[key] = entry
        self.sets[key] = fields
        self.dirty.add(key)

    def encoded(self, gone: Callable[[Path], bool]) -> list[Obj]:
        """The entries that still own something (``gone`` says which paths no longer exist),
        sorted as upstream sorts them."""
        out = []
        for key, entry in self.entries.items():
            owned = {path for path in self.sets[key] if not gone(path)}
            if not owned:
                continue
            if key in self.dirty or len(owned) != len(self.sets[key]):
                entry = {**entry, "fieldsV1": encode(owned)}
            out.append(entry)
        return sorted(
            out,
            key=lambda e: (
                e["operation"],
                e.get("time", ""),
                e["manager"],
                e.get("subresource", ""),
            ),
        )


def record_update(
    kind: str,
    current: Obj | None,
    new: Obj,
    manager: str,
    subresource: str,
    now: str,
    shape: Shape | None = None,
) -> None:
    """Set ``new``'s managedFields after an Update operation (a create when ``current`` is
    None): ``manager`` owns what it changed, and nobody else does any longer."""
    shape = shape or BuiltinShape()
    sent = new["metadata"].get("managedFields")
    base = sent if sent else (current or {}).get("metadata", {}).get("managedFields")
    managers = Managers(base)
    old = current if current is not None else {"metadata": {}, **ZERO_OBJECTS.get(kind, {})}
    gone: FieldSet = set()
    if subresource == "status":  # the endpoint writes nothing else
        before, after = old.get("status", _MISSING), new.get("status", _MISSING)
        fields = changed(before, after, shape.child("status"), ("f:status",), gone)
    else:
        fields = changed(_without_managed(old), _without_managed(new), shape, (), gone)
    key = (manager, UPDATE, subresource)
    if fields:
        managers.take(key, fields)
        owned = managers.sets.get(key, set()) | fields
        managers.set(key, owned, new["apiVersion"], now)
    new["metadata"]["managedFields"] = managers.encoded(_under(gone))
    if not new["metadata"]["managedFields"]:
        new["metadata"].pop("managedFields")


def _without_managed(obj: Obj) -> Obj:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def apply(
    live: Obj | None,
    config: Obj,
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    subresource: str = "",
    shape: Shape | None = None,
) -> Obj:
    """The object after ``manager`` applied ``config`` to ``live`` (None: absent), with its
    managedFields; a 409 naming the conflicts when another manager owns a field the config
    changes, unless ``force``. ``config`` holds only what the endpoint writes (no status on
    the main resource of a type with a status subresource)."""
    shape = shape or BuiltinShape()
    base = live if live is not None else {}
    merged = merge(base, config, shape)
    managers = Managers((base.get("metadata") or {}).get("managedFields"))
    key = (manager, APPLY, subresource)
    wanted = applied_set(config, shape)
    touched = changed(_without_managed(base), _without_managed(merged), shape)
    conflicts = [
        (other, path)
        for other, owned in managers.sets.items()
        if other != key
        for path in sorted(owned & touched)
    ]
    if conflicts and not force and manager == KUBECTL:
        allowed = _last_applied_fields(base, shape)
        conflicts = [(other, path) for other, path in conflicts if path not in allowed]
        force = not conflicts
    if conflicts and not force:
        raise _conflict_error(managers, conflicts)
    managers.take(key, touched)
    dropped = managers.sets.get(key, set()) - wanted
    # What nobody owns any longer goes, unless something below it is still owned.
    owned = wanted.union(*(s for k, s in managers.sets.items() if k != key))
    kept = {path[:n] for path in owned for n in range(1, len(path) + 1)}
    for path in sorted(dropped, key=len, reverse=True):
        if path not in kept:
            _remove(merged, path, shape)
    managers.set(key, wanted, api_version, now)
    annotations = (merged.get("metadata") or {}).get("annotations") or {}
    if manager == KUBECTL and LAST_APPLIED in annotations:
        applied = json.loads(json.dumps(config))
        (applied.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
        annotations[LAST_APPLIED] = json.dumps(applied, separators=(",", ":")) + "\n"
    present = every_path(merged, shape)
    entries = managers.encoded(lambda path: path not in present)
    merged.setdefault("metadata", {})["managedFields"] = entries
    return merged


def _last_applied_fields(live: Obj, shape: Shape) -> FieldSet:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(text) if text else None
    except ValueError:
        return set()
    return applied_set(last, shape) if isinstance(last, dict) else set()


def merge(live: Any, config: Any, shape: Shape) -> Any:
    """``config`` laid over ``live``: maps field by field, map and set lists item by item,
    anything atomic replaced."""
    if isinstance(live, dict) and isinstance(config, dict) and not shape.atomic():
        out = dict(live)
        for name, value in config.items():
            out[name] = merge(live.get(name, _MISSING), value, shape.child(name))
        return out
    if isinstance(live, list) and isinstance(config, list):
        keys = shape.list_keys(live + config)
        if keys is not None:
            items = shape.items()
            result = _list_elements(live, keys)
            for element, item in _list_elements(config, keys).items():
                result[element] = merge(result.get(element, _MISSING), item, items)
            return list(result.values())
    if config is None and live is _MISSING:
        return None
    return json.loads(json.dumps(config))


def _remove(obj: Any, path: Path, shape: Shape) -> None:
    """Take the field or list item at ``path`` out of ``obj``."""
    node, parent_shape = obj, shape
    for element in path[:-1]:
        node, parent_shape = _step(node, element, parent_shape)
        if node is _MISSING:
            return
    last = path[-1]
    if isinstance(node, dict) and last.startswith("f:"):
        node.pop(last[2:], None)
    elif isinstance(node, list):
        keys = parent_shape.list_keys(node) or ()
        node[:] = [item for item in node if _key_element(item, keys) != last]


def _step(node: Any, element: str, shape: Shape) -> tuple[Any, Shape]:
    """The child of ``node`` at ``element``, or _MISSING."""
    if element.startswith("f:") and isinstance(node, dict):
        return node.get(element[2:], _MISSING), shape.child(element[2:])
    if isinstance(node, list):
        keys = shape.list_keys(node) or ()
        found = next((item for item in node if _key_element(item, keys) == element), _MISSING)
        return found, shape.items()
    return _MISSING, shape


def _conflict_error(
    managers: Managers, conflicts: list[tuple[tuple[str, str, str], Path]]
) -> errors.ApiError:
    """409 Conflict as fieldmanager's NewConflictError words it."""
    named = [(_manager_name(managers.entries[key]), path) for key, path in conflicts]
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who}",
            "field": path_string(p),
        }
        for who, p in named
    ]
    if len(named) == 1:
        who, path = named[0]
        message = f"Apply failed with 1 conflict: conflict with {who}: {path_string(path)}"
    else:
        by_manager: dict[str, list[Path]] = {}
        for who, path in named:
            by_manager.setdefault(who, []).append(path)
        lines = []
        for who in sorted(by_manager):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {path_string(path)}" for path in by_manager[who])
        message = f"Apply failed with {len(named)} conflicts: " + "\n".join(lines)
    return errors.ApiError(409, "Conflict", message, {"causes": causes})


def _manager_name(entry: Obj) -> str:
    name = json.dumps(entry["manager"])
    if entry.get("subresource"):
        name += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == UPDATE:
        name += f" using {entry.get('apiVersion')}"
    return name
