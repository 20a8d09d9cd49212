"""The twin's API server answers the corpus requests as the real kube-apiserver answered them.

Every ``tests/apiserver_corpus/kube-apiserver-*.json`` was written by
``python -m tests.apiserver_corpus.record`` from a real kube-apiserver (its version is in the
file). Here the same cases run against the twin's API server, alone as the real one was, and
every recorded field must match, except the fields a corpus lists under ``out_of_scope`` with
the reason the twin differs on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver_corpus.cases import CASES, UNPRIVILEGED
from tests.apiserver_corpus.wire import Wire
from tests.twin.test_apiserver import RunningServer

CORPORA = sorted((Path(__file__).parents[1] / "apiserver_corpus").glob("kube-apiserver-*.json"))
NOBODY_TOKEN = "corpus-nobody-token"


def differences(recorded: Any, seen: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, recorded, seen) for every leaf where the two answers differ."""
    if isinstance(recorded, dict) and isinstance(seen, dict):
        for key in sorted(set(recorded) | set(seen)):
            yield from differences(
                recorded.get(key), seen.get(key), f"{path}.{key}" if path else key
            )
    elif isinstance(recorded, list) and isinstance(seen, list) and len(recorded) == len(seen):
        for index, (one, other) in enumerate(zip(recorded, seen, strict=True)):
            yield from differences(one, other, f"{path}[{index}]")
    elif recorded != seen:
        yield path, recorded, seen


def excused(path: str, out_of_scope: dict[str, str]) -> bool:
    return any(
        path == field or path.startswith(f"{field}.") or path.startswith(f"{field}[")
        for field in out_of_scope
    )


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    running = RunningServer(tmp_path_factory.mktemp("corpus"))
    running.server.add_token(NOBODY_TOKEN, UNPRIVILEGED, [])

    async def compact() -> None:
        running.server.registry.store.compact()

    yield Wire(
        url=running.server.url,
        ca_file=running.server.ca_pem_path,
        token=running.server.admin_token,
        compact=lambda: running.call(compact()),
        tokens={UNPRIVILEGED: NOBODY_TOKEN},
    )
    running.close()


def test_a_corpus_was_recorded() -> None:
    assert CORPORA, (
        "no tests/apiserver_corpus/kube-apiserver-*.json: run tests/apiserver_corpus/record.py"
    )


@pytest.mark.parametrize("corpus_path", CORPORA, ids=lambda path: path.stem)
@pytest.mark.parametrize("name", sorted(CASES))
def test_twin_answers_as_the_real_server(wire: Wire, corpus_path: Path, name: str) -> None:
    corpus = json.loads(corpus_path.read_text())
    if name not in corpus["cases"]:
        pytest.fail(f"case {name} is not in {corpus_path.name}: record the corpus again")
    out_of_scope = corpus.get("out_of_scope", {}).get(name, {})
    seen = json.loads(json.dumps(CASES[name](wire)))
    found = [
        f"  {path}: real {recorded!r}, twin {twin!r}"
        for path, recorded, twin in differences(corpus["cases"][name], seen)
        if not excused(path, out_of_scope)
    ]
    version = corpus["server"]["version"]
    assert not found, (
        f"the twin answers case {name} unlike kube-apiserver {version}:\n" + "\n".join(found)
    )
