"""mkdocs hooks for the documentation site (mkdocs.yml: hooks).

The docstrings cross-reference with Sphinx roles (``:class:`MapType```), which read well in ``help()`` and in
editors; the API pages show the name alone, in code style, as the rest of the site does.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj):(<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(r"\1", html)
