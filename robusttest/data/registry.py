"""Name -> adapter registry, so suites and the CLI can say ``dataset: montgomery``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from robusttest.data.base import Dataset
from robusttest.errors import ConfigError, UnknownNameError

Factory = Callable[..., Dataset]
F = TypeVar("F", bound=Factory)

_ADAPTERS: dict[str, Factory] = {}


def register_adapter(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Class decorator (or decorator of any ``(root, **options) -> Dataset`` callable).

    >>> @register_adapter("my-xrays")
    ... class MyXrays(Dataset): ...
    """
    key = name.strip().lower()
    if not key:
        raise ConfigError("register_adapter: the adapter name is empty")

    def deco(factory: F) -> F:
        old = _ADAPTERS.get(key)
        if (
            old is not None
            and old is not factory
            and not replace
            and _qualname(old) != _qualname(factory)
        ):
            raise ConfigError(
                f"register_adapter: {name!r} is already registered by {_qualname(old)}; "
                "pass replace=True to override it"
            )
        if isinstance(factory, type) and issubclass(factory, Dataset):
            factory.name = key
        _ADAPTERS[key] = factory
        return factory

    return deco


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def available_adapters() -> tuple[str, ...]:
    return tuple(sorted(_ADAPTERS))


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
    factory = _ADAPTERS.get(key)
    if factory is None:
        raise UnknownNameError("dataset adapter", str(name), _ADAPTERS)
    allowed = accepted_options(factory)
    if allowed is not None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{key}: unknown option {unknown[0]!r}; options: {', '.join(sorted(allowed))}"
            )
    return factory(root, **options)
