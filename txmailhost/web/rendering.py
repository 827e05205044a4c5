"""Jinja2 templates from the package's ``templates/``, autoescaped everywhere.

Autoescape is on for every template whatever its name (``autoescape=True``), and undefined
names raise instead of rendering as empty (``StrictUndefined``): a typo in a template is a
test failure, not a blank field. Values that are already safe HTML (sanitised mail) must be
marked with ``markupsafe.Markup`` by the code that made them safe, and nowhere else.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from txmailhost.web.static import HTMX_FILE, Asset


def _size(octets: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if octets < 1024 or unit == "MiB":
            return f"{octets:.0f} {unit}" if unit == "B" else f"{octets:.1f} {unit}"
        octets /= 1024  # type: ignore[assignment]
    return str(octets)


def _when(timestamp: float) -> str:
    """A short date for the message list (UTC; the page shows the full date on hover)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp))


class Templates:
    def __init__(self, assets: dict[str, Asset]) -> None:
        self.env = Environment(
            loader=PackageLoader("txmailhost.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

        def static_url(name: str) -> str:
            return f"/static/{name}?v={assets[name].etag.strip(chr(34))[:12]}"

        self.env.globals.update(
            static_url=static_url,
            integrity=lambda name: assets[name].integrity,
            htmx_file=HTMX_FILE,
            query=lambda **params: urlencode({k: v for k, v in params.items() if v != ""}),
        )
        self.env.filters.update(size=_size, when=_when)

    def render(self, name: str, **values: Any) -> str:
        return self.env.get_template(name).render(**values)
