"""Profiles (seed 001): ``cloud`` (default) and ``embedded``.

The core calls :func:`before_create` before every map creation syscall and
:func:`after_create` once the fd exists; a profile may refuse either.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpfmaps.map import Map
    from ebpfmaps.spec import MapSpec

PROFILES = ("cloud", "embedded")
_active: str | None = None


def active() -> str:
    """The profile in force: ``use()`` wins, then ``EBPFMAPS_PROFILE``, then ``cloud``."""
    if _active is not None:
        return _active
    env = os.environ.get("EBPFMAPS_PROFILE", "cloud").strip().lower() or "cloud"
    return env


def use(name: str) -> None:
    from ebpfmaps.errors import InvalidArgument

    if name not in PROFILES:
        raise InvalidArgument(f"unknown profile {name!r}; choose one of {PROFILES}")
    global _active
    _active = name


def before_create(spec: MapSpec) -> None:
    """Refuse what the active profile forbids, before the syscall."""


def after_create(m: Map) -> None:
    """Charge the new map to the active profile (may raise; the caller then closes it)."""
