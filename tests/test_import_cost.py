"""What ``import ebpfmaps`` defers: the package's tables of lazily loaded map families match the classes
the family modules register, and every lazy name resolves (the subprocess checks of what an import or a
one-shot command loads are in tests/test_cli.py)."""

from __future__ import annotations

import importlib

import pytest

import ebpfmaps
from ebpfmaps.map import MAP_CLASSES, Map, class_for
from ebpfmaps.maptypes import MapType

pytestmark = pytest.mark.no_kernel


def test_the_family_table_matches_the_registered_classes() -> None:
    families = ebpfmaps._FAMILIES
    for module_name in families:
        importlib.import_module(module_name)
    for module_name, (names, types) in families.items():
        module = importlib.import_module(module_name)
        registered = {t for t, cls in MAP_CLASSES.items() if cls.__module__ == module_name}
        assert registered == {int(t) for t in types}, module_name
        for name in names:
            assert getattr(ebpfmaps, name) is getattr(module, name), name
    assert {int(t) for t in MapType if t is not MapType.UNSPEC} == set(ebpfmaps._FAMILY_OF_TYPE)


def test_every_type_has_its_class_and_unknown_ids_the_generic_one() -> None:
    for t in MapType:
        if t is not MapType.UNSPEC:
            assert class_for(t).map_type == t
    assert class_for(1000) is Map


def test_every_public_name_resolves() -> None:
    for name in ebpfmaps.__all__:
        assert getattr(ebpfmaps, name) is not None, name
    assert set(ebpfmaps.__all__) <= set(dir(ebpfmaps))
    for name in ebpfmaps.btf.__all__:
        assert getattr(ebpfmaps.btf, name) is not None, name


def test_every_required_libbpf_function_is_in_the_loaded_library() -> None:
    # Functions are declared on first use; a required one missing from the library is still found here.
    from ebpfmaps import _libbpf

    for name, (_, _, optional) in _libbpf._DECLARATIONS.items():
        fn = getattr(_libbpf.lib, name)
        assert fn is not None or optional, name
