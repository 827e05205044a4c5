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

import difflib
import importlib
import inspect
import re
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
    _check_settings_names(names, settings)
    filters = list(leading)
    for name in names:
        given = dict(settings.get(name, {}))
        factory = factory_for(name)
        _check_options(name, factory, given)
        options = dict(given)
        if name in BUILTIN and name not in _REGISTERED:
            options["host"] = host
        try:
            made = factory(**options)
        except FilterConfigError:
            raise
        except (TypeError, ValueError) as e:
            if not given:
                raise FilterConfigError(f"filter {name!r} could not be built: {e}") from None
            raise FilterConfigError(f"{_blamed(name, given, e)}: {e}") from None
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


def _check_settings_names(names: tuple[str, ...], settings: Mapping[str, Any]) -> None:
    """Settings for a name that is no filter (``[filters.settings.greylsit]``) would be
    ignored without a word. A filter that is merely out of the chain may keep its settings
    (an operator switching it off for a while)."""
    for name in settings:
        if name in names:
            continue
        try:
            factory_for(name)
        except FilterConfigError:
            known = [*BUILTIN, *_REGISTERED, *(e.name for e in entry_points(group=GROUP))]
            close = difflib.get_close_matches(name, [*known, *names], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FilterConfigError(
                f"filters.settings.{name}: there is no filter {name!r}{hint}"
            ) from None


def _expected(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The TOML kind a parameter with this default takes, or None when it doesn't say."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int | float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, list | tuple):
        return (list,), "an array"
    return None


def _check_options(name: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Each option against the factory's parameters, named by its key: an unknown one, or a
    value of another kind than the parameter's default (``delay = "5m"``), which the factory
    would refuse without saying which key ("'<' not supported between 'str' and 'int'")."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # nothing to read it from (a C callable)
        return
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key, value in options.items():
        where = f"filters.settings.{name}.{key}"
        parameter = parameters.get(key)
        if parameter is None or parameter.kind is parameter.VAR_KEYWORD:
            if not open_ended:
                close = difflib.get_close_matches(key, list(parameters), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise FilterConfigError(f"{where}: the {name!r} filter has no such option{hint}")
            continue
        expected = _expected(parameter.default)
        if expected is None:
            continue
        kinds, what = expected
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise FilterConfigError(f"{where}: expected {what}, got {value!r}")
        default = parameter.default
        strings = kinds == (list,) and bool(default) and all(isinstance(v, str) for v in default)
        if strings and not all(isinstance(v, str) for v in value):
            raise FilterConfigError(f"{where}: expected an array of strings, got {value!r}")


def _blamed(name: str, options: Mapping[str, Any], error: Exception) -> str:
    """The key a factory's refusal is about: the one given option its message names, or the
    only one given; else the filter's settings as a whole."""
    named = [key for key in options if re.search(rf"\b{re.escape(key)}\b", str(error))]
    if len(named) != 1 and len(options) == 1:
        named = list(options)
    return f"filters.settings.{name}" + (f".{named[0]}" if len(named) == 1 else "")
