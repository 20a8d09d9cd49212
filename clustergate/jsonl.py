"""Following a folder of JSON-lines files that other processes append to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JsonLinesFollower:
    """Reads what was appended to each ``*.jsonl`` file of a folder since the last read, only
    complete lines (a writer may be in the middle of one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}

    def new_lines(self) -> Iterator[tuple[Path, Any]]:
        """(file, decoded line) of every complete line added since the last call."""
        for path in sorted(self.directory.glob("*.jsonl")):
            with path.open("rb") as appended:
                appended.seek(self._offsets.get(path, 0))
                chunk = appended.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                yield path, json.loads(line)
