"""HTML mail made safe to show: nh3 (the Ammonia sanitiser) with a mail-reader's policy.

Ammonia parses with html5ever, the HTML5 parsing algorithm a browser uses, and keeps only an
allow-list of tags and attributes, so what it lets through is what the browser will see (the
mutation-XSS class of bypasses needs a parser disagreement). On top of its defaults:

- ``<script>``, ``<style>``, ``<title>``, ``<template>``, ``<noscript>`` and ``<svg>``/
  ``<math>`` go *with their content*; forms, frames, objects, ``<meta>`` (refresh), ``<base>``
  and ``<link>`` go too, as does every ``on*`` handler: none is on the allow-list;
- ``href`` keeps only http, https and mailto links; ``src`` only ``data:image/...`` and, when
  the user allowed it for this message, http(s): a remote image is a read receipt
  ("tracking pixel"), so it is dropped and counted unless allowed;
- ``cid:`` images (inline parts) become ``data:`` URLs of the part, when the caller has it;
- ``style`` attributes keep a short list of layout and colour properties (no ``url()``-taking
  ones, no ``position``), and one that mentions ``url(``, ``expression``, escapes or comments
  goes whole: a message can't overlay the page or fetch or run anything through CSS.

The result is shown inside a sandboxed iframe whose response has its own strict
Content-Security-Policy (``responses.body_csp``): if a bypass were ever found here, the
browser still would run no script and load nothing remote.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

DROP_WITH_CONTENT = {"script", "style", "title", "template", "noscript", "svg", "math", "xmp"}
STYLE_PROPERTIES = {
    "color", "background-color", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "line-height",
    "letter-spacing", "white-space", "vertical-align", "width", "height", "max-width",
    "min-width", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "border",
    "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    "display", "list-style-type",
}  # fmt: skip
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
_LINK_SCHEMES = ("http://", "https://", "mailto:")
# Style values that fetch, run or hide something (old IE expressions and behaviours included):
# the whole attribute goes, not only the property.
_RISKY_STYLE = re.compile(
    r"url\s*\(|image-set|expression|behavior|binding|@import|javascript|\\|/\*", re.I
)


def _attributes() -> dict[str, set[str]]:
    allowed = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
    for tag in (
        "table",
        "td",
        "th",
        "tr",
        "tbody",
        "thead",
        "div",
        "span",
        "p",
        "img",
        "font",
        "center",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "blockquote",
    ):
        allowed.setdefault(tag, set()).add("style")  # fmt: skip
    for tag in ("table", "td", "th", "tr"):
        allowed[tag] |= {"align", "valign", "width", "height", "bgcolor", "border",
                         "cellpadding", "cellspacing", "colspan", "rowspan"}  # fmt: skip
    allowed["font"] = allowed.get("font", set()) | {"color", "face", "size", "style"}
    return allowed


_TAGS = (set(nh3.ALLOWED_TAGS) | {"font"}) - DROP_WITH_CONTENT


@dataclass
class Sanitized:
    html: str
    blocked_images: int  # remote images removed (0 when they were allowed)


def sanitize(
    html: str, remote_images: bool = False, inline: Callable[[str], str | None] | None = None
) -> Sanitized:
    """Clean ``html`` from a message. ``inline(content_id)`` gives the ``data:`` URL of an
    inline part (None if there is none); ``remote_images`` keeps http(s) images."""
    blocked = 0

    def attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        lowered = value.strip().lower()
        if name == "style":
            return None if _RISKY_STYLE.search(value) else value
        if name == "href":
            return value if lowered.startswith(_LINK_SCHEMES) else None
        if name != "src":
            return value
        if lowered.startswith("cid:"):
            return inline(value.strip()[4:].strip("<>")) if inline is not None else None
        if _DATA_IMAGE.match(value.strip()):
            return value
        if lowered.startswith(("http://", "https://", "//")):
            if remote_images and not lowered.startswith("//"):
                return value
            blocked += 1
        return None

    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=DROP_WITH_CONTENT,
        attributes=_attributes(),
        attribute_filter=attribute,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    )
    return Sanitized(cleaned, blocked)
