"""The assets the pages load: htmx exactly as published on the npm registry, nothing else."""

from __future__ import annotations

import hashlib
import tomllib
from importlib import resources
from pathlib import Path

from txmailhost.web.static import HTMX_FILE, HTMX_SHA256, HTMX_VERSION, load_assets

STATIC = resources.files("txmailhost.web") / "static"


def test_vendored_htmx_is_the_pinned_release_byte_for_byte():
    body = (STATIC / HTMX_FILE).read_bytes()
    assert hashlib.sha256(body).hexdigest() == HTMX_SHA256
    assert f'version:"{HTMX_VERSION}"'.encode() in body


def test_htmx_ships_with_its_licence():
    assert "Zero-Clause BSD" in (STATIC / "vendor/htmx-LICENSE.txt").read_text()


def test_every_asset_is_loaded_with_a_type_and_an_integrity_value():
    assets = load_assets()
    assert {"app.css", "app.js", HTMX_FILE} <= set(assets)
    for name, asset in assets.items():
        digest = hashlib.sha384(asset.body).digest()
        assert asset.integrity.startswith("sha384-") and len(digest) == 48, name
        assert asset.content_type.endswith("charset=utf-8"), name


def test_templates_and_static_files_are_package_data():
    """An installed (not editable) txmailhost must carry them."""
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]["txmailhost.web"]
    web = root / "txmailhost" / "web"
    shipped = {p for pattern in data for p in web.glob(pattern)}
    files = {p for d in ("templates", "static") for p in (web / d).rglob("*") if p.is_file()}
    assert files <= shipped, sorted(str(p) for p in files - shipped)
