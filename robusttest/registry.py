"""One registry mechanism for every extensible concept.

Each concept (noise families, dataset adapters, metrics, report renderers) has one
``Registry``: a decorator registers an object in-process (a ``conftest.py``, a script), and
an entry-point group registers an installed package's objects, so ``pytest`` and the
``robusttest`` command see the same extensions. Entry points are read lazily, on the first
lookup that needs them, and a broken extension is one ``ExtensionError`` naming the
distribution and the fix rather than a traceback.

An entry point's value is either the object to register (registered under the entry
point's name) or a module whose import registers its objects with the decorator.
"""

from __future__ import annotations

import importlib.metadata as md
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from robusttest.errors import ConfigError, RobustTestError, UnknownNameError

T = TypeVar("T")
D = TypeVar("D")

ENTRY_POINT_GROUPS = {
    "noise": "robusttest.noise",
    "dataset adapter": "robusttest.adapters",
    "metric": "robusttest.metrics",
    "renderer": "robusttest.renderers",
}


class ExtensionError(RobustTestError):
    """An installed extension (entry point) failed to load or registered nothing usable."""


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Name → object, filled by ``register`` and by the entry points of ``group``.

    ``kind`` names the concept in messages ("unknown metric 'dce'; known metrics: ...").
    ``make`` turns what a decorator or entry point hands over into the stored object
    (e.g. instantiates a class); ``name_of`` reads its name.
    """

    def __init__(
        self,
        kind: str,
        *,
        make: Callable[[Any], T] | None = None,
        name_of: Callable[[T], str] | None = None,
    ) -> None:
        self.kind = kind
        self.group = ENTRY_POINT_GROUPS[kind]
        self._make = make or (lambda x: x)
        self._name_of = name_of
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._loaded = False
        self._errors: list[ExtensionError] = []
        self._lock = threading.RLock()

    # --- registering -----------------------------------------------------------------------
    def add(self, name: str, obj: Any, *, replace: bool = False, origin: str | None = None) -> T:
        """Register ``obj`` (after ``make``) under ``name``; returns the stored object.

        Registering the same definition again (a module imported twice, a re-run test) is
        allowed; a different one under a taken name needs ``replace=True``.
        """
        key = name.strip()
        if not key:
            raise ConfigError(f"{self.kind}: a registered {self.kind} needs a non-empty name")
        item = self._make(obj)
        where = origin or _qualname(obj)
        with self._lock:
            old = self._origin.get(key)
            if old is not None and old != where and not replace:
                raise ConfigError(
                    f"{self.kind} {key!r} is already registered by {old}; "
                    "pass replace=True to override it"
                )
            self._items[key] = item
            self._origin[key] = where
        return item

    def register(self, name: str | None = None, *, replace: bool = False) -> Callable[[D], D]:
        """Decorator: ``@REGISTRY.register("name")`` (or without a name when the object
        carries one, see ``name_of``). Returns the decorated object unchanged."""

        def deco(obj: D) -> D:
            key = name
            if key is None:
                key = getattr(obj, "name", None)
            if not key:
                raise ConfigError(
                    f"{_qualname(obj)}: a {self.kind} needs a name "
                    f"(a `name` attribute or register({self.kind!r} name))"
                )
            self.add(str(key), obj, replace=replace)
            return obj

        return deco

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests; a plugin unloading itself)."""
        with self._lock:
            self._items.pop(name, None)
            self._origin.pop(name, None)

    # --- entry points ----------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every installed extension of this registry's group, once.

        Every extension is tried; a broken one is raised (as ExtensionError) after the
        others loaded, and again at each later lookup that needs the entry points.
        """
        with self._lock:
            if not self._loaded:
                self._loaded = True
                for ep in _entry_points(self.group):
                    try:
                        self._load_one(ep)
                    except ExtensionError as exc:
                        self._errors.append(exc)
            if self._errors:
                raise self._errors[0]

    def _load_one(self, ep: md.EntryPoint) -> None:
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        try:
            obj = ep.load()
        except Exception as exc:
            raise ExtensionError(
                f"{self.kind} extension {ep.name!r} ({ep.value}, from {dist}, entry-point group "
                f"{self.group}) failed to load: {type(exc).__name__}: {exc}; fix or uninstall "
                f"{dist}"
            ) from None
        if isinstance(obj, types.ModuleType):
            return  # importing the module registered its objects
        if ep.name in self._items and self._origin.get(ep.name) == _qualname(obj):
            return
        try:
            self.add(ep.name, obj, origin=_qualname(obj))
        except RobustTestError as exc:
            raise ExtensionError(f"{self.kind} extension {ep.name!r} from {dist}: {exc}") from None

    # --- looking up ------------------------------------------------------------------------
    def get(self, name: str) -> T:
        key = str(name).strip()
        if key not in self._items:
            self.load_entry_points()
        try:
            return self._items[key]
        except KeyError:
            raise UnknownNameError(self.kind, key, self._items) from None

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self.load_entry_points()
        return name in self._items

    def names(self) -> tuple[str, ...]:
        self.load_entry_points()
        return tuple(sorted(self._items))

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            yield n, self._items[n]

    def origin(self, name: str) -> str:
        """Where ``name`` was registered (module.qualname), for messages and listings."""
        self.get(name)
        return self._origin[name]


def _entry_points(group: str) -> list[md.EntryPoint]:
    eps = md.entry_points(group=group)
    seen: set[tuple[str, str]] = set()
    out: list[md.EntryPoint] = []
    for ep in sorted(eps, key=lambda e: e.name):  # a stable order, whatever sys.path says
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


__all__ = ["ENTRY_POINT_GROUPS", "ExtensionError", "Registry"]
