"""Name -> adapter registry, so suites and the CLI can say ``dataset: montgomery``.

Adapters are registered by ``@register_adapter("name")`` (a built-in module, a
``conftest.py``, a script) or by an installed package's entry point in the group
``robusttest.adapters`` (value: a ``Dataset`` subclass or ``(root, **options) -> Dataset``
callable, or a module whose import registers its adapters), on the project's one
``robusttest.registry.Registry``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from robusttest.data.base import Dataset
from robusttest.errors import ConfigError
from robusttest.registry import Registry

Factory = Callable[..., Dataset]
F = TypeVar("F", bound=Factory)


class _AdapterRegistry(Registry[Factory]):
    """Adapter names are lower case; a ``Dataset`` subclass learns its registered name."""

    def add(
        self, name: str, obj: Any, *, replace: bool = False, origin: str | None = None
    ) -> Factory:
        key = name.strip().lower()
        factory = super().add(key, obj, replace=replace, origin=origin)
        if isinstance(factory, type) and issubclass(factory, Dataset):
            factory.name = key
        return factory


def _check_factory(obj: Any) -> Factory:
    if not callable(obj):
        raise ConfigError(
            f"{obj!r}: a dataset adapter is a Dataset subclass or a "
            "(root, **options) -> Dataset callable"
        )
    return obj


ADAPTERS: Registry[Factory] = _AdapterRegistry("dataset adapter", make=_check_factory)


def register_adapter(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Class decorator (or decorator of any ``(root, **options) -> Dataset`` callable).

    Registering the same definition again is fine; a different one under a taken name
    needs ``replace=True``.

    >>> @register_adapter("my-xrays")
    ... class MyXrays(Dataset): ...
    """
    key = name.strip().lower()
    if not key:
        raise ConfigError("register_adapter: the adapter name is empty")

    def deco(factory: F) -> F:
        ADAPTERS.add(key, factory, replace=replace)
        return factory

    return deco


def available_adapters() -> tuple[str, ...]:
    return ADAPTERS.names()


def accepted_options(factory: Factory) -> tuple[str, ...] | None:
    """Keyword options a factory takes (walking Dataset subclasses' __init__); None = any."""
    targets: list[Any] = (
        [
            k.__dict__["__init__"]
            for k in factory.__mro__
            if k is not object and "__init__" in k.__dict__
        ]
        if isinstance(factory, type)
        else [factory]
    )
    names: list[str] = []
    for fn in targets:
        params = inspect.signature(fn).parameters.values()
        names += [
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in ("self", "root")
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return tuple(dict.fromkeys(names))
    return None


def open_dataset(name: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Open a dataset by adapter name, e.g. ``open_dataset("montgomery", "/data/montgomery")``."""
    key = str(name).strip().lower()
    factory = ADAPTERS.get(key)
    allowed = accepted_options(factory)
    if allowed is not None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{key}: unknown option {unknown[0]!r}; options: {', '.join(sorted(allowed))}"
            )
    return factory(root, **options)
