"""Disk cache of per-image outputs, shared by re-runs and by pytest-xdist workers.

One SQLite file; each row is one (context, image, condition, repeat) → metric values or
scores. SQLite transactions make a crash mid-run leave no half-written entry, and its
locking lets several processes share the file. The context key holds the model sha256,
the data manifest hash, the preprocessing (model card), the noise configuration, the seed
and the code version, so a row written under any other setting is never looked up.
Rows written by another robusttest version are ignored (not trusted), whatever their key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robusttest import __version__

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    return Path.cwd() / ".robusttest-cache"


def context_key(parts: Mapping[str, Any]) -> str:
    blob = json.dumps({**parts, "_code": __version__, "_format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class OutputCache:
    """Get/put per-image outputs under a context key."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "outputs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outputs (context TEXT, image_id TEXT, condition TEXT, "
            "repeat INTEGER, version TEXT, payload TEXT, "
            "PRIMARY KEY (context, image_id, condition, repeat))"
        )

    def get_many(
        self, context: str, condition: str, repeat: int, image_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        q = (
            "SELECT image_id, version, payload FROM outputs WHERE context=? AND condition=? "
            "AND repeat=? AND image_id IN ({})"
        )
        for i in range(0, len(image_ids), 500):
            chunk = list(image_ids[i : i + 500])
            rows = self._db.execute(
                q.format(",".join("?" * len(chunk))), (context, condition, repeat, *chunk)
            )
            for image_id, version, payload in rows:
                if version == __version__:
                    out[image_id] = json.loads(payload)
        return out

    def put_many(
        self, context: str, condition: str, repeat: int, items: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        rows = [
            (context, image_id, condition, repeat, __version__, json.dumps(payload, sort_keys=True))
            for image_id, payload in items
        ]
        with self._db:  # one transaction: all rows of a batch or none
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self._db.close()
