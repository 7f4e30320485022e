"""The documentation site builds in strict mode and renders: headless Chromium opens it as a reader would.

The site is built from docs/ and mkdocs.yml with mkdocs-material and mkdocstrings (the API reference comes from
the docstrings). Chromium (Debian's, installed by make test) screenshots the home page and an API page and dumps
their DOM after scripts ran; the test checks the title, the navigation and a known function's entry, and that the
screenshots are pages with content, not blank or error pages.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import ebpfmaps_shim.errors
import pytest

from ebpfmaps import errors
from ebpfmaps.maps.queue import LengthUnknown
from ebpfmaps.resize import ResizeWarning
from tests.conftest import ROOT
from tests.doc_examples import markdown_files

pytestmark = pytest.mark.no_kernel

WIDTH, HEIGHT = 1280, 1600
GUIDES = ["Getting started", "Map types", "Typed maps from BTF", "Which map when", "Sharing maps with programs", "Ring buffers",
          "Extensible maps", "Profiles", "The command line", "The Prometheus exporter", "Running the tests in VMs"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert build.returncode == 0, build.stdout + build.stderr
    return out


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[list[str]]:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (make test installs Debian's chromium through mk/docs.mk)"
    # A fresh profile per test, and nothing that would reach for the network.
    yield [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}"]


def dump_dom(chromium: list[str], page: Path) -> str:
    out = subprocess.run([*chromium, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def screenshot(chromium: list[str], page: Path, png: Path) -> bytes:
    out = subprocess.run([*chromium, f"--screenshot={png}", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and png.exists(), out.stderr
    return png.read_bytes()


def png_facts(data: bytes) -> tuple[int, int, float]:
    """Width, height and the share of non-zero bytes in the (filtered) pixel rows.

    Rows of one colour filter to zeros, so a blank page scores near 0 and text, navigation and code score more.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    return width, height, sum(1 for b in raw if b) / len(raw)


def test_the_home_page_renders(site: Path, chromium: list[str], tmp_path: Path) -> None:
    home = site / "index.html"
    dom = dump_dom(chromium, home)
    assert "<title>ebpfmaps</title>" in dom
    for guide in GUIDES:
        assert guide in dom, f"navigation lacks {guide!r}"
    assert "API reference" in dom and "Errors" in dom
    width, height, ink = png_facts(screenshot(chromium, home, tmp_path / "home.png"))
    assert (width, height) == (WIDTH, HEIGHT)
    assert ink > 0.003, f"the home page looks blank ({ink:.2%} of the filtered bytes are set)"


def test_the_api_page_renders_a_known_function(site: Path, chromium: list[str], tmp_path: Path) -> None:
    api = site / "api" / "core.html"
    dom = dump_dom(chromium, api)
    assert "<title>Creating and opening maps - ebpfmaps</title>" in dom
    assert 'id="ebpfmaps.factory.create"' in dom and 'id="ebpfmaps.factory.open_pinned"' in dom
    # The entry carries its signature and its docstring, not just an anchor.
    assert "map_type" in dom and "Create a map of" in dom
    assert ":class:" not in dom and ":meth:" not in dom  # the docstrings' Sphinx roles are rendered as code
    assert "Getting started" in dom  # the navigation is there too
    width, height, ink = png_facts(screenshot(chromium, api, tmp_path / "api.png"))
    assert (width, height) == (WIDTH, HEIGHT)
    assert ink > 0.003, f"the API page looks blank ({ink:.2%} of the filtered bytes are set)"


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in markdown_files()[1:]:
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert rel in nav, f"docs/{rel} is not in mkdocs.yml's nav"


def test_the_errors_page_names_every_exception() -> None:
    page = (ROOT / "docs" / "errors.md").read_text()
    classes = {obj for module in (errors, ebpfmaps_shim.errors) for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, errors.MapError)}
    names = {c.__name__ for c in classes} | {LengthUnknown.__name__, ResizeWarning.__name__}
    missing = sorted(n for n in names if f"`{n}`" not in page and f".{n}`" not in page)
    assert not missing, f"docs/errors.md does not explain {missing}"
