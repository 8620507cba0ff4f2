"""The SQLite output cache: put/get, version isolation, atomic batches, sharing."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import robusttest.cache as cache_mod
from robusttest.cache import OutputCache, context_key


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[OutputCache]:
    c = OutputCache(tmp_path / "c")
    yield c
    c.close()


def rows(path: Path) -> int:
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])
    finally:
        db.close()


def test_put_get(cache: OutputCache) -> None:
    items: list[tuple[str, dict[str, Any]]] = [
        ("a", {"values": {"dice/lungs": 0.9}, "targets": {}}),
        ("b", {"values": {"dice/lungs": math.nan}, "targets": {"x": 1}}),
    ]
    cache.put_many("ctx", "quantum-dose10", 1, items)
    got = cache.get_many("ctx", "quantum-dose10", 1, ["a", "b", "c"])
    assert set(got) == {"a", "b"}
    assert got["a"] == items[0][1]
    assert math.isnan(got["b"]["values"]["dice/lungs"]) and got["b"]["targets"] == {"x": 1}
    # every key part matters
    assert cache.get_many("ctx", "quantum-dose10", 0, ["a"]) == {}
    assert cache.get_many("ctx", "clean", 1, ["a"]) == {}
    assert cache.get_many("other", "quantum-dose10", 1, ["a"]) == {}
    assert cache.get_many("ctx", "quantum-dose10", 1, []) == {}


def test_floats_survive_exactly(cache: OutputCache) -> None:
    x = 0.1 + 0.2
    cache.put_many("ctx", "clean", 0, [("a", {"v": x, "w": 1e-300})])
    got = cache.get_many("ctx", "clean", 0, ["a"])["a"]
    assert got["v"] == x and got["w"] == 1e-300


def test_put_replaces(cache: OutputCache) -> None:
    cache.put_many("ctx", "clean", 0, [("a", {"v": 1})])
    cache.put_many("ctx", "clean", 0, [("a", {"v": 2})])
    assert cache.get_many("ctx", "clean", 0, ["a"]) == {"a": {"v": 2}}
    assert rows(cache.path) == 1


def test_many_ids_are_chunked(cache: OutputCache) -> None:
    ids = [f"img-{i:05d}" for i in range(1203)]  # more than one 500-id chunk
    cache.put_many("ctx", "clean", 0, ((i, {"i": n}) for n, i in enumerate(ids)))
    got = cache.get_many("ctx", "clean", 0, ids)
    assert len(got) == 1203 and got["img-01202"] == {"i": 1202}


def test_rows_from_another_version_are_ignored(
    cache: OutputCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "__version__", "0.0.0-other")
    cache.put_many("ctx", "clean", 0, [("a", {"v": 1})])
    monkeypatch.undo()
    assert rows(cache.path) == 1
    assert cache.get_many("ctx", "clean", 0, ["a"]) == {}
    cache.put_many("ctx", "clean", 0, [("a", {"v": 2})])  # this version's row replaces it
    assert cache.get_many("ctx", "clean", 0, ["a"]) == {"a": {"v": 2}}


def test_context_key_depends_on_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = {"model": "m", "seed": 0}
    k = context_key(parts)
    assert k == context_key(dict(reversed(parts.items())))  # order-free
    assert len(k) == 64 and k != context_key({"model": "m", "seed": 1})
    monkeypatch.setattr(cache_mod, "__version__", "0.0.0-other")
    assert context_key(parts) != k


def test_failed_generator_writes_nothing(cache: OutputCache) -> None:
    def items() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "a", {"v": 1}
        yield "b", {"v": 2}
        raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError):
        cache.put_many("ctx", "clean", 0, items())
    assert rows(cache.path) == 0
    cache.put_many("ctx", "clean", 0, [("c", {"v": 3})])  # the connection is still usable
    assert cache.get_many("ctx", "clean", 0, ["a", "c"]) == {"c": {"v": 3}}


def test_failure_inside_the_transaction_rolls_back(cache: OutputCache) -> None:
    # rows a and b are inserted, then sqlite rejects the third (a list is no SQL value):
    # the batch's transaction must leave none of them
    bad: Any = ["not", "a", "string"]
    with pytest.raises((sqlite3.Error, TypeError, ValueError)):
        cache.put_many("ctx", "clean", 0, [("a", {"v": 1}), ("b", {"v": 2}), (bad, {"v": 3})])
    assert rows(cache.path) == 0
    assert not cache._db.in_transaction
    cache.put_many("ctx", "clean", 0, [("a", {"v": 1})])
    assert rows(cache.path) == 1


def test_two_connections_share_entries(tmp_path: Path) -> None:
    a = OutputCache(tmp_path)
    b = OutputCache(tmp_path)
    try:
        a.put_many("ctx", "clean", 0, [("x", {"v": 1})])
        assert b.get_many("ctx", "clean", 0, ["x"]) == {"x": {"v": 1}}
        b.put_many("ctx", "clean", 0, [("y", {"v": 2})])
        assert a.get_many("ctx", "clean", 0, ["x", "y"]) == {"x": {"v": 1}, "y": {"v": 2}}
    finally:
        a.close()
        b.close()
    c = OutputCache(tmp_path)  # and a reopened file keeps them
    try:
        assert len(c.get_many("ctx", "clean", 0, ["x", "y"])) == 2
    finally:
        c.close()
    assert (tmp_path / "outputs.sqlite").is_file()
