"""A run's identity, what it creates, and how everything it changed is put back.

Every object a check creates carries :data:`MANAGED_BY` and the run id label, and lives in the
run's own namespace where it can; deleting the namespace at teardown removes it. What a check
changes outside its namespace (a cordon, a weight, a node-group size) is registered as an undo
action on the :class:`RunContext` and also marked on the object itself, so that ``--sweep``
can put it back after a run that was killed before its teardown (``clustergate.leftovers``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate import access, shutdown
from clustergate.kube import Cluster

log = logging.getLogger("clustergate.run")

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "clustergate"
RUN_ID = "clustergate.io/run-id"
#: Annotation on a node cordoned by a run: the run id. The sweep uncordons such nodes.
CORDONED_BY = "clustergate.io/cordoned-by"
#: Annotation on such a node: when the run cordoned it (ISO 8601), for the leftovers check.
CORDONED_AT = "clustergate.io/cordoned-at"
CREATED_AT = "clustergate.io/created-at"
#: Label of a ConfigMap in a run namespace that records a setting to put back if the run is
#: killed; the value says what kind (``weights``: a cutover's original traffic weight,
#: ``sizes``: the ASGs' desired capacity before a scaling check).
RESTORE_LABEL = "clustergate.io/restore"
RESTORE_WEIGHTS = "weights"
#: A scaling check's original Auto Scaling group desired capacities.
RESTORE_SIZES = "sizes"
#: Label of a run namespace kept by ``--keep-on-failure`` for a person to look at. Its value is
#: ``"true"``; the run that kept it has finished, so the sweep treats it as a dead run's leftover.
KEPT_LABEL = "clustergate.io/kept-on-failure"
#: Annotation on a kept namespace: when it was kept, and the failed checks it holds the state of.
KEPT_AT = "clustergate.io/kept-at"
KEPT_FOR = "clustergate.io/kept-for"
#: Objects a check names (for its diagnostics) in each list, newest kept.
MAX_NAMED = 50


@dataclass(frozen=True)
class Named:
    """An object a check used, whose state its diagnostics show if it fails. ``snapshot`` is
    what was seen of it before it went away (a probe pod is deleted as soon as it reported)."""

    kind: str
    name: str
    namespace: str | None = None
    snapshot: dict[str, object] | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.kind, self.name, self.namespace)


def new_run_id() -> str:
    """Sortable and label-safe: cg-20261125t1030-4f2a."""
    return f"cg-{datetime.now(UTC):%Y%m%dt%H%M}-{secrets.token_hex(2)}"


def run_labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, RUN_ID: run_id}


def selector(run_id: str | None = None) -> str:
    base = f"{MANAGED_BY}={MANAGER}"
    return f"{base},{RUN_ID}={run_id}" if run_id else base


@dataclass
class RunContext:
    """What a check needs to create things safely: the run id, its namespace and its undo list."""

    cluster: Cluster
    run_id: str
    namespace: str
    labels: dict[str, str]
    #: One undo list per open scope: the run's, and the current check's on top of it.
    _scopes: list[list[_Undo]] = field(default_factory=lambda: [[]])
    #: ``--keep-on-failure``: a failed check's deletions are skipped (its put-backs still run).
    keep_on_failure: bool = False
    #: The failed checks whose objects were kept (the namespace then stays too).
    kept_for: list[str] = field(default_factory=list)
    _check_failed: bool = False
    #: Objects named by the current (or last) check, and those named outside any check.
    _named_check: list[Named] = field(default_factory=list)
    _named_shared: list[Named] = field(default_factory=list)
    _in_check: bool = False
    _put_backs_left: bool = False

    def metadata(self, name: str, **extra_labels: str) -> client.V1ObjectMeta:
        return client.V1ObjectMeta(
            name=name,
            namespace=self.namespace,
            labels={**self.labels, **extra_labels},
            annotations={CREATED_AT: datetime.now(UTC).isoformat()},
        )

    def on_teardown(
        self, description: str, undo: Callable[[], None], *, deletes: bool = False
    ) -> None:
        """Register ``undo`` to run when the current check ends (or the run, outside a check),
        even after a failure, Ctrl-C or SIGTERM. ``deletes``: the undo only deletes what the
        check created (skipped for a failed check under ``--keep-on-failure``); otherwise it puts
        back a change (a cordon, a weight, a size) and always runs.

        The order is explicit: every put-back first, newest first, then every deletion, newest
        first; a cordoned node or a wrong weight hurts the cluster, a stray object does not.
        After SIGTERM a check's deletions wait until the run's put-backs are done, and what is
        not started before the deadline (``clustergate.shutdown``) is left for ``--sweep``."""
        self._scopes[-1].append(_Undo(description, undo, deletes))

    def check_failed(self, check: str) -> None:
        """The framework says the running check failed: under ``keep_on_failure`` what it
        created stays, in the run namespace, for a person to look at."""
        self._check_failed = True
        if self.keep_on_failure and check not in self.kept_for:
            self.kept_for.append(check)

    def name(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        snapshot: dict[str, object] | None = None,
    ) -> None:
        """Say that the running check uses this object: if the check fails, its diagnostics
        show the object's state and events (the run namespace is always shown).

        Named inside a check, an object belongs to that check; named outside any check (by a
        module fixture that probes once for several checks), it belongs to every check that
        follows until :meth:`forget_shared` (the framework calls it as each module starts)."""
        entry = Named(kind, name, namespace, snapshot)
        target = self._named_check if self._in_check else self._named_shared
        target[:] = [item for item in target if item.key != entry.key]
        target.append(entry)
        del target[:-MAX_NAMED]

    def forget_shared(self) -> None:
        """Objects named outside checks so far belong to no check that follows."""
        self._named_shared.clear()

    @property
    def in_check(self) -> bool:
        return self._in_check

    def named(self, include_check: bool = True) -> list[Named]:
        """What the current (or last) check named, its own first, without repeats; with
        ``include_check`` false only what was named outside checks."""
        seen: dict[tuple[str, str, str | None], Named] = {}
        own = self._named_check if include_check else []
        for entry in (*own, *self._named_shared):
            seen.setdefault(entry.key, entry)
        return list(seen.values())

    @contextmanager
    def check_scope(self) -> Iterator[list[str]]:
        """Everything registered inside is undone on leaving, so that one check's workloads,
        budgets and cordons never meet the next check. Yields the list of undo failures."""
        self._scopes.append([])
        self._named_check = []
        self._in_check = True
        self._check_failed = False
        failures: list[str] = []
        try:
            yield failures
        finally:
            self._in_check = False
            keep = self.keep_on_failure and self._check_failed
            actions = self._scopes.pop()
            if shutdown.terminating():
                # Deletions wait for the put-backs the run scope still holds.
                self._scopes[-1].extend(action for action in actions if action.deletes)
                actions = [action for action in actions if not action.deletes]
            failures.extend(self._run(actions, keep_created=keep))

    def undo_all(self) -> list[str]:
        """Run every undo action still registered, put-backs of every scope before any
        deletion; return the ones that failed or were left undone (and why)."""
        actions = [action for scope in self._scopes for action in scope]
        self._scopes[:] = [[]]
        return self._run(actions, keep_created=bool(self.kept_for))

    @property
    def everything_put_back(self) -> bool:
        """False when a put-back failed or was left undone: the run namespace (which may hold
        the record of what to put back) must then stay for ``--sweep``."""
        return not self._put_backs_left

    def _run(self, actions: list[_Undo], keep_created: bool) -> list[str]:
        failures = []
        ordered = [a for a in reversed(actions) if not a.deletes]
        ordered += [a for a in reversed(actions) if a.deletes]
        for action in ordered:
            if action.deletes and keep_created:
                log.warning("kept for --keep-on-failure: not done: %s", action.description)
                continue
            if shutdown.past_deadline():
                failures.append(f"{action.description}: not started before the SIGTERM deadline")
                log.error("left for pytest --sweep: %s", action.description)
                self._put_backs_left |= not action.deletes
                continue
            try:
                action.undo()
            except Exception as error:  # every undo must get its chance
                failures.append(f"{action.description}: {error}")
                log.error("could not %s: %s", action.description, error)
                self._put_backs_left |= not action.deletes
        return failures


@dataclass(frozen=True)
class _Undo:
    description: str
    undo: Callable[[], None]
    deletes: bool


def create_namespace(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    """The run's namespace, where a gate identity then binds itself clustergate-run."""
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, annotations={CREATED_AT: datetime.now(UTC).isoformat()}
        )
    )
    cluster.core().create_namespace(body)
    access.bind_run_role(cluster, name, labels)


def keep_namespace(cluster: Cluster, name: str, checks: list[str]) -> None:
    """Mark a run namespace kept by ``--keep-on-failure`` (:data:`KEPT_LABEL`): the run that
    kept it has finished, so ``--sweep`` removes it whatever its age."""
    cluster.core().patch_namespace(
        name,
        {
            "metadata": {
                "labels": {KEPT_LABEL: "true"},
                "annotations": {
                    KEPT_AT: datetime.now(UTC).isoformat(),
                    KEPT_FOR: "; ".join(checks)[:2000],
                },
            }
        },
    )


def delete_namespace(cluster: Cluster, name: str) -> None:
    try:
        cluster.core().delete_namespace(name, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise
