"""The files under ``/static/``: our stylesheet and script, and htmx, all served by us (no CDN).

htmx comes from the npm registry (package ``htmx.org``), pinned to :data:`HTMX_VERSION`:
``dist/htmx.min.js`` of that release is vendored as ``static/vendor/htmx-VERSION.min.js``
with its licence (0BSD), and :data:`HTMX_SHA256` is the SHA-256 of the file as published
(``npm pack htmx.org@VERSION`` checks the tarball against the registry's sha512 integrity).
A test compares the vendored file with it, so a changed byte can't slip in unnoticed. To
upgrade: ``npm pack htmx.org@NEW``, copy ``package/dist/htmx.min.js`` and ``package/LICENSE``,
update both constants and the template's file name, and read the release notes for CSP
changes (we run it with ``allowEval`` and ``includeIndicatorStyles`` off, see
``templates/base.html``).

Why 2.x and not 4.0: the 2.0 line has years of production use and a stable attribute set;
4.0 appeared weeks before this was written and changes request and inheritance semantics.

Only the files found in the package at start are served, looked up by exact name: no path
from the URL ever reaches the file system.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib import resources

HTMX_VERSION = "2.0.11"
HTMX_FILE = f"vendor/htmx-{HTMX_VERSION}.min.js"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"

_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    integrity: str  # Subresource Integrity value (sha384-...) for <script>/<link>


def load_assets() -> dict[str, Asset]:
    """Every file under ``static/``, by its path relative to it (``vendor/htmx-...js``)."""
    assets: dict[str, Asset] = {}
    root = resources.files("txmailhost.web") / "static"

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            suffix = "." + name.rpartition(".")[2]
            if suffix not in _TYPES:
                continue
            body = child.read_bytes()
            digest = hashlib.sha384(body).digest()
            assets[name] = Asset(
                body,
                _TYPES[suffix],
                '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                "sha384-" + base64.b64encode(digest).decode(),
            )

    walk(root, "")
    return assets
