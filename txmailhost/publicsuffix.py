"""The public suffix list (the ``publicsuffixlist`` package's copy), loaded once a process:
where a name's registrable part begins. DMARC's organisational domain (RFC 7489 3.2) and the
URI block lists' domains (``spam/links.py``) are both that part; this module imports
nothing else, so the spam scoring process can use it without DMARC's DNS code."""

from __future__ import annotations

from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()


def registrable_domain(name: str) -> str | None:
    """The public suffix plus one label of ``name`` (``mail.example.co.uk`` ->
    ``example.co.uk``), None when ``name`` is a public suffix itself (``co.uk``)."""
    return _PSL.privatesuffix(name.lower().rstrip("."))


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (``mail.example.co.uk`` ->
    ``example.co.uk``); a public suffix itself is its own."""
    domain = domain.lower().rstrip(".")
    return _PSL.privatesuffix(domain) or domain
