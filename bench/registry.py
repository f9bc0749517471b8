"""A typed name -> factory registry shared by methods, datasets and metrics.

Taken from timm's and lm-evaluation-harness's registries, minus their slips: a duplicate name raises
(timm only warns), and one decorator is the only source of truth. Third-party plugins arrive through
Python entry points (``colorbench.methods``, ``colorbench.datasets``, ``colorbench.metrics``) and are
loaded lazily, the first time a registry is asked for a name or a listing.
"""

from __future__ import annotations

import difflib
import types
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """A name that is unknown or registered twice. ``str()`` gives the plain message (KeyError quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownName(RegistryError):
    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        # Compared case-blind, so "PSNR" finds "psnr"; what is suggested is the registered spelling.
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Choices: {', '.join(choices) or '(none)'}")


class DuplicateName(RegistryError):
    pass


def has_plugins(group: str) -> bool:
    """Whether any installed distribution declares an entry point in ``group``: reads package metadata
    only, so a caller can skip importing a registry (and torch) when there is nothing to load."""
    return any(True for _ in metadata.entry_points(group=group))


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    source: str  # "builtin" or the distribution that provided the plugin


class Registry(Generic[T]):
    """Names -> objects of one kind. ``base`` (optional) is checked at registration time."""

    def __init__(self, kind: str, entry_point_group: str | None = None, base: type | None = None):
        self.kind = kind
        self.group = entry_point_group
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = False

    def register(self, name: str, description: str | None = None, *, source: str = "builtin") -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("unet", "ResNet34-UNet regressor")``."""

        def wrap(obj: T) -> T:
            self.add(name, obj, description=description, source=source)
            return obj

        return wrap

    def add(self, name: str, obj: T, *, description: str | None = None, source: str = "builtin") -> None:
        if name in self._entries:
            prev = self._entries[name]
            raise DuplicateName(f"{self.kind} {name!r} is already registered (by {prev.source}); pick another name")
        if self.base is not None and isinstance(obj, type) and not issubclass(obj, self.base):
            raise TypeError(f"{self.kind} {name!r}: {obj!r} must subclass {self.base.__name__}")
        if description is None:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, obj, description, source)

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.group is None:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # a plugin already registered itself on import (it may call .register itself)
            source = ep.dist.name if ep.dist is not None else ep.value
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the harness down, but must be seen
                raise RuntimeError(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            # An entry point may name the class itself, or a module that registered its classes on import.
            if ep.name not in self._entries and not isinstance(obj, types.ModuleType):
                self.add(ep.name, obj, source=source)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
