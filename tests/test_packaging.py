"""The wheel ships every package of the tree: pyproject's explicit package list names each directory that holds
an ``__init__.py`` under ``ebpfmaps/`` and ``shim/`` (a missing one still imports from the tree, in editable
installs, and only breaks the installed wheel)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(base)
            found.add(".".join((name, *rel.parts)))
    assert found - listed == set(), "packages missing from pyproject's [tool.setuptools] packages"
    assert listed - found == set(), "pyproject lists packages the tree does not have"
