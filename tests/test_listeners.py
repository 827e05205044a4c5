"""The listener table: service.build starts one listener per entry whose [listen] key is set."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory

from txmailhost.config import ListenConfig, load_config
from txmailhost.datadir import ensure_data_dir
from txmailhost.listeners import IMAP_BUSY, ListenerKind, ServerParts, TLSStyle
from txmailhost.service import Listener, build


class _Hello(Factory):
    protocol = Protocol


def _built(
    tmp_path: Path, listen: ListenConfig, kinds: list[ListenerKind], **sections: dict[str, Any]
) -> list[Listener]:
    """The listeners ``build`` makes of ``kinds``; ``sections``: config settings changed,
    by section (``imap={"sort_cache_messages": 1234}``)."""
    data = str(tmp_path / "data")
    ensure_data_dir(data)
    config = dataclasses.replace(load_config(data), listen=listen)
    changed = {k: dataclasses.replace(getattr(config, k), **v) for k, v in sections.items()}
    top = build(dataclasses.replace(config, **changed), MemoryReactorClock(), listeners=kinds)
    return [service for service in top if isinstance(service, Listener)]


def test_a_new_service_is_one_table_entry(tmp_path: Path) -> None:
    made: list[tuple[ServerParts, bool]] = []

    def hello(parts: ServerParts, implicit_tls: bool) -> Any:
        made.append((parts, implicit_tls))
        return _Hello()

    kind = ListenerKind("hello", "imap", hello, TLSStyle.STARTTLS, IMAP_BUSY)
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    listen = dataclasses.replace(listen, imap="tcp:24190:interface=127.0.0.1")

    [listener] = _built(tmp_path, listen, [kind])

    assert (listener.label, listener.description) == ("hello", "tcp:24190:interface=127.0.0.1")
    assert isinstance(listener.factory.wrappedFactory, _Hello)  # inside the connection limits
    assert listener.factory.refusal == IMAP_BUSY
    assert [implicit for _parts, implicit in made] == [False]
    assert made[0][0].portal is not None  # built from the server's one portal


def test_an_implicit_tls_entry_is_wrapped_in_tls(tmp_path: Path) -> None:
    kind = ListenerKind("hellos", "imaps", lambda parts, tls: _Hello(), TLSStyle.IMPLICIT, b"")
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    listen = dataclasses.replace(listen, imaps="tcp:24191:interface=127.0.0.1")

    [listener] = _built(tmp_path, listen, [kind])

    assert isinstance(listener.factory.wrappedFactory, TLSMemoryBIOFactory)
    assert isinstance(listener.factory.wrappedFactory.wrappedFactory, _Hello)


def test_an_entry_whose_endpoint_is_empty_does_not_listen(tmp_path: Path) -> None:
    kind = ListenerKind("hello", "imap", lambda parts, tls: _Hello(), TLSStyle.STARTTLS, b"")
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})

    assert _built(tmp_path, listen, [kind]) == []


def test_the_imap_listeners_share_one_notify_hub(tmp_path: Path) -> None:
    """A NOTIFY session on 993 hears the mailboxes a session on 143 creates."""
    from txmailhost.listeners import LISTENERS

    kinds = [kind for kind in LISTENERS if kind.label in ("imap", "imaps")]
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    listen = dataclasses.replace(
        listen, imap="tcp:24192:interface=127.0.0.1", imaps="tcp:24193:interface=127.0.0.1"
    )
    plain, implicit = _built(tmp_path, listen, kinds)
    imap = plain.factory.wrappedFactory
    imaps = implicit.factory.wrappedFactory.wrappedFactory
    assert imap is not imaps and imap.notify_hub is imaps.notify_hub


def test_the_imap_listeners_share_one_sort_key_cache_of_the_configured_size(
    tmp_path: Path,
) -> None:
    """A webmail reconnecting on 993 sorts from the keys a session on 143 loaded."""
    from txmailhost.listeners import LISTENERS

    kinds = [kind for kind in LISTENERS if kind.label in ("imap", "imaps")]
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    listen = dataclasses.replace(
        listen, imap="tcp:24194:interface=127.0.0.1", imaps="tcp:24195:interface=127.0.0.1"
    )
    plain, implicit = _built(tmp_path, listen, kinds, imap={"sort_cache_messages": 1234})
    imap = plain.factory.wrappedFactory
    imaps = implicit.factory.wrappedFactory.wrappedFactory
    assert imap.sort_keys is imaps.sort_keys
    assert imap.sort_keys.limit == 1234


def test_the_smtp_listener_looks_clients_up_unless_told_not_to(tmp_path: Path) -> None:
    """[smtp] reverse_dns: the port 25 listener's sessions get the server's reverse DNS (its
    resolver, the filters' threads); submission's never; off, nobody's."""
    from txmailhost.listeners import LISTENERS
    from txmailhost.reversedns import ReverseDNS

    kinds = [kind for kind in LISTENERS if kind.label in ("smtp", "submission")]
    listen = ListenConfig(**{f.name: "" for f in dataclasses.fields(ListenConfig)})
    listen = dataclasses.replace(
        listen, smtp="tcp:24196:interface=127.0.0.1", submission="tcp:24197:interface=127.0.0.1"
    )
    for on in (True, False):
        built = _built(tmp_path, listen, kinds, smtp={"reverse_dns": on})
        smtp, submission = [listener.factory.wrappedFactory for listener in built]
        assert isinstance(smtp.reverse_dns, ReverseDNS) is on
        assert submission.reverse_dns is None


def test_the_started_servers_heap_is_frozen_and_later_cycles_still_collected() -> None:
    import gc

    from txmailhost.service import freeze_startup_heap

    class Cycle:
        pass

    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        made = Cycle()
        made.me = made  # type: ignore[attr-defined]
        del made
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
