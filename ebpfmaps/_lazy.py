"""Modules a module depends on but imports on first use, so ``import ebpfmaps`` stays small.

A module declares such a dependency once, at module level, in the ``else`` branch of ``if TYPE_CHECKING``::

    if TYPE_CHECKING:
        from ebpfmaps.btf import maps as btf_maps
    else:
        btf_maps = lazy_module("ebpfmaps.btf.maps")

Type checkers and IDEs see the real module; at run time ``btf_maps.typed_codecs`` imports
``ebpfmaps.btf.maps`` the first time it is read. The dependency is an ordinary edge of the package's
import graph (the architecture test reads ``lazy_module("...")`` as an import), so laziness never hides
a cycle.
"""

from __future__ import annotations

import errno
import importlib
import sys
from types import ModuleType

from ebpfmaps.errors import out_of_descriptors

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LazyModule", "lazy_module", "loaded"]


class LazyModule:
    """Stands for a module until an attribute is read, then imports it and reads from it."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = _import(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._name in sys.modules else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except OSError as exc:
        # Reading the module's file takes a descriptor: with none left, say so as every other operation does.
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise out_of_descriptors(exc.errno, "import", f"loading {name}", call="open") from None
        raise


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it when first used (typed ``Any``: declare the real
    module under ``TYPE_CHECKING``)."""
    return LazyModule(name)


def loaded(name: str) -> ModuleType | None:
    """Module ``name`` if something imported it already, else None (without importing it): no instance
    of a class it defines can exist before it is loaded."""
    return sys.modules.get(name)
