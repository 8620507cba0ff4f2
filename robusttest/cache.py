"""Disk cache of per-image outputs, shared by re-runs and by pytest-xdist workers.

One SQLite file; each row is one (context, image, condition, repeat) → metric values or
scores. SQLite transactions make a crash mid-run leave no half-written entry, and its
locking lets several processes share the file. The context key holds the model sha256,
the data manifest hash, the preprocessing (model card), the noise configuration, the seed
and the code version, so a row written under any other setting is never looked up.
Rows written by another robusttest version are ignored (not trusted), whatever their key.

The cache only ever saves time, so a cache that fails (a damaged or half-restored file, a
lock held too long, a folder that cannot be written, a full disk) never fails the run:
the first failure warns once (``CacheWarning``: the file, what went wrong, the fix) and
the run goes on without the cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import sqlite3
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robusttest import __version__
from robusttest.errors import RobustTestWarning

# 2: decoding changed (RGB as luminance, PNG sBIT, bit_depth): rows of 1 are not reused
CACHE_FORMAT = 2
LOCK_TIMEOUT_S = 60.0  # how long a write waits for another process's transaction
_OTHER_FOLDER = "or use another cache folder (--cache-dir DIR; --robust-cache-dir DIR in pytest)"


class CacheWarning(RobustTestWarning):
    """The output cache failed; the run went on without it."""


def default_cache_dir() -> Path:
    return Path.cwd() / ".robusttest-cache"


def context_key(parts: Mapping[str, Any]) -> str:
    blob = json.dumps({**parts, "_code": __version__, "_format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _environmental(exc: BaseException, *, reading: bool = False) -> bool:
    """A failure of the file or the disk (go on without the cache), not a bug of ours;
    when ``reading``, a row that is not JSON too (a damaged file)."""
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    return isinstance(exc, (OSError, sqlite3.DatabaseError)) or (
        reading and isinstance(exc, ValueError)
    )


def diagnose(exc: BaseException) -> tuple[str, str]:
    """(what went wrong, the fix) for a failure of the cache file at ``path``."""
    text = str(exc)
    low = text.lower()
    code = exc.errno if isinstance(exc, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in low:
        return "its disk is full", f"free space there, {_OTHER_FOLDER}"
    if "locked" in low or "busy" in low:
        return (
            f"another process holds a lock on it ({text})",
            f"wait for that process to finish, {_OTHER_FOLDER}",
        )
    if (
        isinstance(exc, (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError))
        or "readonly" in low
        or "unable to open" in low
        or code in (errno.EROFS, errno.EACCES, errno.EPERM)
    ):
        return (
            f"it cannot be written ({exc.strerror if isinstance(exc, OSError) else text})",
            f"make its folder writable, {_OTHER_FOLDER}",
        )
    return f"it is damaged ({text})", "delete the file (the cache is rebuilt on the next run)"


class OutputCache:
    """Get/put per-image outputs under a context key.

    ``problem`` is None while the cache works; after its first failure it says what went
    wrong, every get returns nothing and every put does nothing.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "outputs.sqlite"
        self.problem: str | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=LOCK_TIMEOUT_S, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outputs (context TEXT, image_id TEXT, "
                "condition TEXT, repeat INTEGER, version TEXT, payload TEXT, "
                "PRIMARY KEY (context, image_id, condition, repeat))"
            )
        except Exception as exc:
            if not _environmental(exc):
                raise
            self.fail(exc)

    @property
    def active(self) -> bool:
        return self._db is not None

    def fail(self, exc: BaseException) -> None:
        """Warn once, naming the file and the fix; from now on the run has no cache."""
        what, fix = diagnose(exc)
        self.problem = (
            f"output cache {self.path}: {what}; the run goes on without it. To fix: {fix}"
        )
        warnings.warn(self.problem, CacheWarning, stacklevel=3)
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def get_many(
        self, context: str, condition: str, repeat: int, image_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        if self._db is None:
            return {}
        try:
            return self._get_many(context, condition, repeat, image_ids)
        except Exception as exc:
            if not _environmental(exc, reading=True):
                raise
            self.fail(exc)
            return {}

    def _get_many(
        self, context: str, condition: str, repeat: int, image_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        assert self._db is not None
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
                    row = json.loads(payload)
                    if not isinstance(row, dict):
                        raise ValueError(f"a row of image {image_id!r} is not a JSON object")
                    out[image_id] = row
        return out

    def put_many(
        self, context: str, condition: str, repeat: int, items: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        if self._db is None:
            return
        rows = [
            (context, image_id, condition, repeat, __version__, json.dumps(payload, sort_keys=True))
            for image_id, payload in items
        ]
        try:
            with self._db:  # one transaction: all rows of a batch or none
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?)", rows)
        except Exception as exc:
            if not _environmental(exc) or self._db is None:
                raise
            self.fail(exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
