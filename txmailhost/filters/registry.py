"""Filters by name: what ``[filters] chain`` may list, and how third-party filters plug in.

A name resolves, in this order, to a factory registered with ``register`` (by txmailhost
itself, or an application that embeds it), an entry point of the ``txmailhost.filters`` group
(how a package installed beside txmailhost offers its filters), or a ``package.module:factory``
path. The factory is called with the filter's ``[filters.settings.NAME]`` options as keyword
arguments and returns an ``IMessageFilter`` (docs/filters.rst). txmailhost's own filters
(``BUILTIN``) also get ``host=``, a ``FilterHost``: the data directory for their state and
the server's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from txmailhost.filters.chain import FilterChain
from txmailhost.filters.interfaces import IMessageFilter

GROUP = "txmailhost.filters"

_REGISTERED: dict[str, Callable[..., Any]] = {}

# txmailhost's own filters, imported when the chain names them.
BUILTIN = {
    "spam": "txmailhost.spam.scoring:SpamFilter",
    "greylist": "txmailhost.spam.greylist:GreylistFilter",
    "clamd": "txmailhost.spam.clamd:ClamdFilter",
    "spamd": "txmailhost.spam.spamd:SpamdFilter",
    "rspamd": "txmailhost.spam.rspamd:RspamdFilter",
}


@dataclass(frozen=True)
class FilterHost:
    """What the server tells its own filters: where state goes (``DATA/``), its name."""

    data_dir: str
    hostname: str
    # The server's one DNS resolver (mailauth.resolver.MailAuthResolver: [relay] nameservers,
    # a cache, timeouts) for filters that ask DNS; None: they don't.
    resolver: Any = None
    # The PostgreSQL database every node shares (store.backend = "postgres"): filters whose
    # state must agree across nodes (greylisting) keep it there; "": in DATA/.
    shared_dsn: str = ""
    # The server's reactor and the filters' threads (``Lane``), for a filter that runs on the
    # reactor and sends only its blocking part to the threads (the spam score); None: a
    # filter made outside a server (tests, the CLI) blocks instead.
    reactor: Any = None
    pool: Any = None
    # How many of those threads each client may hold (``fairness.ClientSlots``), shared with
    # the chain; None: no limit for a filter's own trips.
    slots: Any = None


class FilterConfigError(ValueError):
    """A name in ``[filters] chain`` that can't be turned into a filter (message says why)."""


def register(name: str, factory: Callable[..., Any]) -> None:
    """Make ``name`` usable in ``[filters] chain``."""
    _REGISTERED[name] = factory


def factory_for(name: str) -> Callable[..., Any]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    for entry in entry_points(group=GROUP):
        if entry.name == name:
            return entry.load()
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as e:
            raise FilterConfigError(f"filter {name!r} can't be loaded: {e}") from None
    raise FilterConfigError(
        f"unknown filter {name!r} (not registered, no '{GROUP}' entry point; "
        "a path is written 'package.module:factory')"
    )


def build_chain(
    names: tuple[str, ...],
    settings: Mapping[str, Mapping[str, Any]],
    reactor: Any,
    pool: Any,
    timeout: float,
    on_error: str,
    host: FilterHost | None = None,
    leading: tuple[Any, ...] = (),
    per_client: int = 4,
) -> FilterChain | None:
    """The chain for ``[filters]``, after the ``leading`` filters the server itself runs
    (mail authentication); None when it is empty. Raises ``FilterConfigError``."""
    filters = list(leading)
    for name in names:
        options = dict(settings.get(name, {}))
        if name in BUILTIN and name not in _REGISTERED:
            options["host"] = host
        try:
            made = factory_for(name)(**options)
        except FilterConfigError:
            raise
        except Exception as e:
            raise FilterConfigError(f"filter {name!r} could not be built: {e}") from None
        if not IMessageFilter.providedBy(made):
            raise FilterConfigError(f"filter {name!r} does not provide IMessageFilter")
        filters.append(made)
    if not filters:
        return None
    return FilterChain(
        filters,
        reactor,
        pool,
        timeout=timeout,
        on_error=on_error,
        per_client=per_client,
        slots=getattr(host, "slots", None),
    )
