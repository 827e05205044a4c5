"""The TOML config file, turned into typed, validated, frozen settings.

This is the only module that reads the config file (``DATA/txmailhost.toml`` unless ``--config``
names another). ``service.py`` wires objects from the :class:`Config` it returns; protocol
factories never see the file.

The section dataclasses below *are* the schema: every key is a dataclass field declared with
:func:`setting`, which carries its default, a one-paragraph doc and a validator. The same table
drives three things, so they can't drift apart:

- :func:`load_config` checks each key with its validator;
- :func:`render_default_config` writes the self-documenting file ``txmailhost init`` creates
  (every key present, commented out, with its default and doc);
- the dataclass defaults, for code (and tests) that build a ``Config`` by hand.

Errors are collected, not raised one at a time: an administrator fixing a config file wants
every problem in one run, each naming the file and the key (``smtp.max_message_size``) and what
was expected. Unknown sections and keys are errors too, because a typo that is silently ignored
is a setting that silently doesn't apply.

Sizes are plain integers of bytes and timeouts plain numbers of seconds: no "50M" or "5m"
mini-language to parse, document and get wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import socket
import stat
import textwrap
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import idna

from txmailhost.nameservers import parse_nameserver

CONFIG_NAME = "txmailhost.toml"
MiB = 1024 * 1024
# Connections per listener: Linux's default fs.nr_open (the most open files a process may
# have) is 1,048,576, so a larger limit could never be reached, only overflow setrlimit.
MAX_CONNECTIONS = 1_000_000
FILTER_THREADS = 8  # the blocking filters' threads (service._build_filters)
# Largest integer a setting takes: TOML's own (a signed 64-bit integer, which Python's
# tomllib doesn't enforce), IMAP4rev2's number64 (RFC 9051: APPENDLIMIT), within SMTP
# SIZE's 20 digits (RFC 1870); 10**30 was announced as "SIZE 1000...0", 31 digits
LARGEST_INTEGER = 2**63 - 1
# Largest config file read: the commented one ``init`` writes is under 32 KiB
MAX_CONFIG_SIZE = 1024 * 1024


class ConfigError(Exception):
    """The config can't be used; ``problems`` lists every reason, each naming file and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Invalid(Exception):
    """Raised by a validator; its message is what was expected ("expected a ...")."""


# -- validators ---------------------------------------------------------------------------------
# Each takes the value TOML produced and returns the value to store, or raises _Invalid saying
# what was expected. The caller adds the file, the key and the offending value.


def _integer(
    unit: str, minimum: int = 1, maximum: int | None = None, example: str = ""
) -> Callable[[Any], int]:
    if maximum is not None:
        expected = f"expected an integer number of {unit} from {minimum} to {maximum}"
    elif minimum == 1:
        expected = f"expected a positive integer number of {unit}"
    else:
        expected = f"expected an integer number of {unit}, at least {minimum}"
    if example:
        expected += f" ({example})"

    def check(value: Any) -> int:
        # bool is an int subclass in Python; `true` is never a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(expected)
        if value < minimum or (maximum is not None and value > maximum):
            raise _Invalid(expected)
        if value > LARGEST_INTEGER:
            raise _Invalid(f"{expected}, at most {LARGEST_INTEGER} (2^63-1)")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("expected true or false")
    return value


def _seconds_or_zero(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("expected a number of seconds (0 to disable)")
    if not math.isfinite(value) or value < 0:
        raise _Invalid("expected a number of seconds (0 to disable)")
    return float(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("expected a positive number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise _Invalid("expected a positive number of seconds")
    return float(value)


def _seconds_at_least(minimum: float, why: str) -> Callable[[Any], float]:
    """Seconds no fewer than a protocol's floor: an autologout timer shorter than its RFC
    allows logs out clients that follow that RFC (and were told nothing)."""

    def check(value: Any) -> float:
        seconds = _seconds(value)
        if seconds < minimum:
            raise _Invalid(f"expected at least {minimum:g} seconds ({why})")
        return seconds

    return check


def _path(value: Any) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise _Invalid('expected a file path as a string ("" for the default)')
    return value


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _hostname(value: Any) -> str:
    """A DNS host name (RFC 1123 2.1), lower-cased, without a trailing dot."""
    expected = "expected a host name such as 'mail.example.org'"
    if not isinstance(value, str):
        raise _Invalid(expected)
    name = value.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise _Invalid(expected + ", not an IP address")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise _Invalid(expected)
    return name


def _default_workers() -> int:
    """One worker per core (at most 16: each costs its own memory for code and caches)."""
    return max(1, min(os.cpu_count() or 1, 16))


def _default_hostname() -> str:
    """This machine's name, found the way Postfix finds its default ``myhostname``.

    ``gethostname()`` is the name the administrator gave the machine; ``getfqdn()`` alone
    often turns it into "localhost" (when /etc/hosts lists ``127.0.0.1 localhost vm``), and
    the greeting and the certificate would then say localhost. A name without a dot is
    completed by the resolver when it knows a fully-qualified one, else with ".localdomain"
    (Postfix's default ``mydomain``), so EHLO carries a domain name (RFC 5321 4.1.1.1).
    """
    try:
        name = _hostname(socket.gethostname())
    except _Invalid:
        name = "localhost"
    if "." in name or name == "localhost":
        return name
    try:
        fqdn = _hostname(socket.getfqdn(name))
    except _Invalid:
        fqdn = ""
    if fqdn.startswith(name + ".") and fqdn != f"{name}.localdomain":
        return fqdn
    return f"{name}.localdomain"


# Endpoint types that would make Twisted do TLS itself: the service adds TLS from [tls] (so that
# certificates can be reloaded), so these would mean TLS twice or a second, unreloadable config.
_TLS_ENDPOINT_TYPES = {"ssl", "tls", "le", "lets"}


class _ListenRecorder:
    """What an endpoint asks of the reactor to listen, recorded and not done: the two calls
    of Twisted's ``MemoryReactor`` the checks below read. That one lives in
    ``twisted.internet.testing``, which imports trial and ``unittest``: 31 modules and 2 MiB
    of a CLI run kept for a config check (11 modules and 0.8 MiB in the server, where
    twistd's plugin scan loads some of trial anyway)."""

    def __init__(self) -> None:
        self.tcpServers: list[tuple[int, Any, int, str]] = []
        self.unixServers: list[tuple[str, Any, int, int, bool]] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> None:
        self.tcpServers.append((port, factory, backlog, interface))

    def listenUNIX(
        self,
        address: str,
        factory: Any,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,
    ) -> None:
        self.unixServers.append((address, factory, backlog, mode, wantPID))


# The shapes nearly every [listen] value takes (every default among them): "tcp:PORT" and
# "tcp:PORT:interface=A.B.C.D". Read here, they give what Twisted's parser gives, without
# importing twisted.internet.endpoints, which loads OpenSSL, twisted.internet.ssl and the
# plugin system: about 90 ms of every CLI command, which all load the config. Anything else
# (tcp6, escapes, keywords, whitespace, other kinds, mistakes) is Twisted's to read.
_PLAIN_TCP = re.compile(r"tcp:([0-9]{1,5})(?::interface=([0-9.]{1,15}))?")


def _plain_tcp(description: str) -> tuple[int, str] | None:
    """The port and interface Twisted would listen on for a plain ``tcp:`` description, or
    None when Twisted must read it (``_endpoint``, ``_check_listener_conflicts``)."""
    match = _PLAIN_TCP.fullmatch(description)
    if match is None:
        return None
    return int(match[1]), match[2] or ""


def _endpoint(value: Any) -> str:
    """A Twisted server endpoint description, checked by parsing it against a fake reactor.

    ``serverFromString`` parses without touching the network; for TCP we also "listen" on a
    ``_ListenRecorder`` (which only records the call) to check the port range and the interface,
    which Twisted would otherwise only reject when the real server starts.
    """
    expected = (
        "expected a Twisted endpoint description such as 'tcp:25:interface=0.0.0.0', "
        "or '' to disable the listener"
    )
    if not isinstance(value, str):
        raise _Invalid(expected)
    if value == "":
        return value
    kind = value.split(":", 1)[0].strip().lower()
    if kind in _TLS_ENDPOINT_TYPES:
        raise _Invalid(
            "expected a plain 'tcp:' endpoint: txmailhost adds TLS itself using the [tls] section"
        )
    if kind == "systemd":
        # Socket activation: only meaningful inside the systemd unit (it reads LISTEN_FDS), so
        # it can't be checked here, and the CLI must still load this config outside the unit.
        return value

    plain = _plain_tcp(value)
    for port, interface in [plain] if plain else _tcp_listens(value, expected):
        if not 0 <= port <= 65535:
            raise _Invalid(f"{expected} (port {port} is not from 0 to 65535)")
        if interface:
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                raise _Invalid(
                    f"{expected} (interface {interface!r} is not an IP address)"
                ) from None
    return value


def _tcp_listens(value: str, expected: str) -> list[tuple[int, str]]:
    """The (port, interface) pairs a TCP endpoint description asks to listen on, read by
    Twisted's own parser; none for the other kinds."""
    from twisted.internet.endpoints import (
        TCP4ServerEndpoint,
        TCP6ServerEndpoint,
        serverFromString,
    )
    from twisted.internet.protocol import Factory

    reactor = _ListenRecorder()
    try:
        endpoint = serverFromString(reactor, value)
        if isinstance(endpoint, TCP4ServerEndpoint | TCP6ServerEndpoint):
            endpoint.listen(Factory())
    except Exception as e:  # Twisted's parsers raise ValueError, TypeError, IndexError, ...
        raise _Invalid(f"{expected} ({e})") from None
    return [(port, interface) for port, _factory, _backlog, interface in reactor.tcpServers]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    check: Callable[[Any], Any],
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare one config key: its default, its documentation and its validator, together."""
    metadata = {"doc": " ".join(doc.split()), "check": check}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# -- the schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """[server]: who this server is and how it runs. Flattened into ``Config.hostname``,
    ``shutdown_grace`` and ``workers``."""

    hostname: str = setting(
        default_factory=_default_hostname,
        check=_hostname,
        doc="""The fully-qualified name of this server: it appears in the SMTP greeting and EHLO,
        in the Received: headers it adds and in the self-signed certificate made on first start.
        Use the name your MX record points to (and that the IP address resolves back to), e.g.
        "mail.example.org". Default: this machine's host name (gethostname), completed to a
        fully-qualified name by the resolver or, failing that, with ".localdomain".""",
    )
    shutdown_grace: float = setting(
        30.0,
        check=_seconds,
        doc="""On SIGTERM the server stops accepting connections, says goodbye to idle sessions
        (IMAP "* BYE", POP3 without deleting, SMTP 421) and waits this many seconds at most
        for SMTP transactions in progress to complete before it stops.""",
    )
    workers: int = setting(
        default_factory=_default_workers,
        check=_integer("processes", maximum=256),
        doc="""How many worker processes serve the protocols; default: one per core (at most
        16), or 1 with the "memory" store. 1: one process does everything.
        More: a supervising process binds the listening sockets and runs this many workers
        that share them (each a full server on the same data directory), restarting any that
        dies; use the number of cores to use them all. The web and metrics listeners and the
        relay queue run in the first worker. Needs a store shared by processes (not "memory").
        See docs/scaling.rst.""",
    )


@dataclass(frozen=True)
class ListenConfig:
    """[listen]: where each protocol accepts connections, as Twisted endpoint descriptions."""

    smtp: str = setting(
        "tcp:2525:interface=127.0.0.1",
        check=_endpoint,
        doc="""Incoming mail from other servers (the MX role; port 25 in production, e.g.
        "tcp:25:interface=0.0.0.0"). Values are Twisted endpoint descriptions; for IPv6 escape
        the colons of the address: 'tcp6:25:interface=\\:\\:' (a TOML literal string, in single
        quotes, keeps the backslashes). An empty string "" turns the listener off. The defaults
        listen on loopback and unprivileged ports so a first start can't expose anything.""",
    )
    submission: str = setting(
        "tcp:2587:interface=127.0.0.1",
        check=_endpoint,
        doc="""Mail submission by your users with STARTTLS and AUTH (RFC 6409; port 587 in
        production).""",
    )
    submissions: str = setting(
        "tcp:2465:interface=127.0.0.1",
        check=_endpoint,
        doc="""Mail submission over implicit TLS (RFC 8314; port 465 in production). Give a
        plain "tcp:" endpoint: txmailhost wraps it in TLS with the [tls] certificate.""",
    )
    imap: str = setting(
        "tcp:2143:interface=127.0.0.1",
        check=_endpoint,
        doc="IMAP with STARTTLS (port 143 in production).",
    )
    imaps: str = setting(
        "tcp:2993:interface=127.0.0.1",
        check=_endpoint,
        doc='IMAP over implicit TLS (port 993 in production; a plain "tcp:" endpoint).',
    )
    pop3: str = setting(
        "tcp:2110:interface=127.0.0.1",
        check=_endpoint,
        doc="POP3 with STLS (port 110 in production).",
    )
    pop3s: str = setting(
        "tcp:2995:interface=127.0.0.1",
        check=_endpoint,
        doc='POP3 over implicit TLS (port 995 in production; a plain "tcp:" endpoint).',
    )
    metrics: str = setting(
        "tcp:29100:interface=127.0.0.1",
        check=_endpoint,
        doc="""Prometheus metrics over plain HTTP at /metrics (docs/admin.rst, "Operations").
        Keep it on loopback or a private network: it shows listeners, logins and the queue.""",
    )
    managesieve: str = setting(
        "tcp:24190:interface=127.0.0.1",
        check=_endpoint,
        doc="""ManageSieve with STARTTLS (RFC 5804), where users upload their Sieve scripts and
        vacation replies (port 4190 in production).""",
    )
    web: str = setting(
        "tcp:2443:interface=127.0.0.1",
        check=_endpoint,
        doc="""Webmail and autoconfiguration over HTTPS, with the [tls] certificate (port 443 in
        production; a plain "tcp:" endpoint).""",
    )
    web_redirect: str = setting(
        "tcp:2080:interface=127.0.0.1",
        check=_endpoint,
        doc="""Plain HTTP that only redirects to the HTTPS address (port 80 in production); it
        never shows a page or takes a password.""",
    )


def _names(value: Any) -> tuple[str, ...]:
    expected = 'expected a list of host names such as ["mx.example.org", "*.example.net"]'
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(expected)
    for name in value:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", name):
            raise _Invalid(f"{expected}; {name!r} is not one")
    return tuple(name.lower() for name in value)


def _acme_names(value: Any) -> tuple[str, ...]:
    names = _names(value)
    if any(name.startswith("*.") for name in names):
        raise _Invalid("expected host names; a wildcard needs the DNS-01 challenge, not offered")
    return names


def _https_url(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https://[^\s/?#]+(/[^\s]*)?", value):
        raise _Invalid('expected an https:// URL such as "https://ca.example/directory"')
    return value


def _contact(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([^@\s:]+@[A-Za-z0-9.-]+)?", value):
        raise _Invalid('expected an e-mail address such as "hostmaster@example.org", or ""')
    return value


def _sni_name(value: str) -> str:
    """A name of ``tls.sni`` as a client's SNI carries it: lower case, no trailing dot,
    A-labels (RFC 6066 3: the HostName is ASCII, IDNA A-labels), a wildcard only as the whole
    left-most label (RFC 6125 6.4.3) and above at least two labels (``*.example`` would be a
    certificate for a whole top-level domain, which no CA issues)."""
    name = value.strip().rstrip(".").lower()
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise _Invalid("not a valid internationalised domain name (IDNA 2008)") from None
    try:
        name = _hostname(name)
    except _Invalid:
        raise _Invalid("expected a host name, or a wildcard *.NAME") from None
    if wildcard and "." not in name:
        raise _Invalid("a wildcard needs at least two labels after '*.'")
    return f"*.{name}" if wildcard else name


def _sni_certificates(value: Any) -> dict[str, tuple[str, str]]:
    """Host name -> (certificate path, key path); every bad entry is named at once."""
    expected = (
        'expected a table of host name = [certificate, key], e.g. { "mail.example.net" = '
        '["certs/example.net.pem", "certs/example.net.key"] }'
    )
    if not isinstance(value, dict):
        raise _Invalid(expected)
    pairs: dict[str, tuple[str, str]] = {}
    problems = []
    for given, files in value.items():
        try:
            name = _sni_name(given)
        except _Invalid as e:
            problems.append(f"{given!r}: {e}")
            continue
        if name in pairs:
            problems.append(f"{given!r}: the same name as another entry")
            continue
        if (
            not isinstance(files, list)
            or len(files) != 2
            or not all(isinstance(f, str) and f and "\0" not in f for f in files)
        ):
            problems.append(f"{given!r}: expected [certificate path, key path], got {_show(files)}")
            continue
        pairs[name] = (files[0], files[1])
    if problems:
        raise _Invalid(f"{expected}; " + "; ".join(problems))
    return pairs


@dataclass(frozen=True)
class TLSConfig:
    """[tls]: the certificates every listener offers (the default, and others by the name a
    client asks for). In a loaded Config, absolute paths."""

    certificate: str = setting(
        "",
        check=_path,
        doc="""PEM file holding the server certificate followed by its intermediate
        certificates (the full chain, e.g. Let's Encrypt's fullchain.pem). A relative path is
        relative to the data directory. Empty: DATA/tls/cert.pem, where a self-signed
        certificate for server.hostname is created on first start; clients will warn about it
        until you configure one signed by a CA. Set certificate and key together.""",
    )
    key: str = setting(
        "",
        check=_path,
        doc="""PEM file holding the unencrypted private key of the certificate (keep it readable
        by the server's user only). Empty: DATA/tls/key.pem.""",
    )
    sni: dict = setting(
        default_factory=dict,
        check=_sni_certificates,
        doc="""More certificates, chosen by the host name a client asks for by SNI (RFC
        6066): a table from each name to its [certificate, key] pair, e.g. {
        "mail.example.net" = ["certs/example.net.pem", "certs/example.net.key"] }, the full
        chain and its unencrypted key, paths relative to the data directory. A client that names one of
        these gets its certificate, on every TLS listener; any other name, or none, gets
        tls.certificate. "*.example.net" matches one label (a.example.net, not
        example.net or a.b.example.net); an exact name wins over a wildcard. Names are
        compared without case and trailing dot, internationalised ones as A-labels. Each
        pair is checked at start and reloaded when its files change, as tls.certificate is;
        ACME renews only tls.certificate.""",
    )
    handshake_timeout: float = setting(
        30.0,
        check=_seconds,
        doc="""Seconds a client has to finish the TLS handshake, on the implicit-TLS ports and
        after STARTTLS/STLS, before the connection is aborted: a client that connects and
        never finishes would otherwise hold its connection slot until the session timeout.""",
    )
    acme: bool = setting(
        False,
        check=_boolean,
        doc="""Get the certificate from an ACME CA (RFC 8555; Let's Encrypt by default) and
        renew it at two thirds of its lifetime, without a restart. The HTTP-01 challenge is
        answered on listen.web_redirect, which must be reachable as port 80 of every name in
        tls.acme_domains. The certificate and key are written to tls.certificate and tls.key
        (the key is kept across renewals, so a DANE 3 1 1 record stays valid); the ACME
        account lives in DATA/tls/acme/.""",
    )
    acme_directory: str = setting(
        "https://acme-v02.api.letsencrypt.org/directory",
        check=_https_url,
        doc="""The ACME directory URL. Let's Encrypt's staging directory,
        https://acme-staging-v02.api.letsencrypt.org/directory, is the one to try first.""",
    )
    acme_contact: str = setting(
        "",
        check=_contact,
        doc="""E-mail address the CA may write to about the account (expiry warnings).
        Empty: none given.""",
    )
    acme_domains: tuple[str, ...] = setting(
        (),
        check=_acme_names,
        doc="""Names the certificate is for, e.g. ["mail.example.org", "mta-sts.example.org"].
        Empty: server.hostname.""",
    )
    acme_ca_file: str = setting(
        "",
        check=_path,
        doc="""PEM file of the CA that signs the ACME server's own HTTPS certificate, for a
        private or test ACME server. Empty: the system's trust store.""",
    )


@dataclass(frozen=True)
class SMTPConfig:
    """[smtp]: limits of the SMTP server (MX and submission alike)."""

    max_message_size: int = setting(
        50 * MiB,
        check=_integer("bytes", example="e.g. 52428800 for 50 MiB"),
        doc="""Largest message accepted, in bytes; announced with the EHLO SIZE keyword (RFC
        1870) and enforced while the message streams in: a larger one is refused with 552.
        Default 52428800 bytes, 50 MiB.""",
    )
    max_recipients: int = setting(
        100,
        check=_integer("recipients"),
        doc="""Most RCPT TO commands accepted in one transaction; further ones get 452 and the
        client sends them in another transaction. RFC 5321 4.5.3.1.8 asks for at least 100.""",
    )
    max_line_length: int = setting(
        2048,
        check=_integer("bytes", minimum=1000),
        doc="""Longest command line accepted, in bytes including CRLF (RFC 5321 4.5.3.1.4
        and .6 require at least 512 and 1000); a longer one gets 500 5.5.2 (500 5.5.6 when
        it is a SASL response or an AUTH line, RFC 4954 6) and is skipped up to its line
        end. Lines inside a message are not limited here: they count towards
        max_message_size and are never split, since splitting them is how SMTP smuggling
        starts.""",
    )
    idle_timeout: float = setting(
        300.0,
        check=_seconds,
        doc="""Seconds a client may stay silent before the connection is closed with 421 (RFC
        5321 4.5.3.2.7 suggests 5 minutes).""",
    )
    session_timeout: float = setting(
        3600.0,
        check=_seconds,
        doc="""Seconds a whole connection may last, however busy, so that a slow-drip client
        can't hold a connection forever.""",
    )
    max_errors: int = setting(
        20,
        check=_integer("errors"),
        doc="""Failed or unknown commands tolerated in one connection before it is closed with
        421; spammers probing addresses hit this long before a real client does.""",
    )
    max_junk_commands: int = setting(
        100,
        check=_integer("commands"),
        doc="""NOOP, RSET, VRFY, EXPN and HELP commands tolerated in one connection since the
        last message it delivered, before it is closed with 421 (Postfix's
        smtpd_junk_command_limit): a client looping on them holds a connection while sending
        no mail. A message taken starts the count again.""",
    )
    greeting_delay: float = setting(
        0.0,
        check=_seconds_or_zero,
        doc="""Seconds the smtp listener (port 25; never submission) waits before its 220
        greeting, as Postfix's postscreen does. A client that speaks first is a spam engine
        that doesn't wait for replies: it gets 554 5.5.1 and is disconnected. 0 (the
        default): greet at once; 3 to 6 stops most bots and delays real servers' mail only
        by that much.""",
    )
    reverse_dns: bool = setting(
        True,
        check=_boolean,
        doc="""Look up each smtp client's reverse DNS name (port 25; not loopback or private
        addresses) when it connects, as Postfix does, through [relay] nameservers: the
        name, forward-confirmed, goes into the Received: field ("unknown" when there is
        none), which SpamAssassin and rspamd downstream read, and to the filters (rspamd's
        Hostname; without it rspamd scores every client as one without a name). Needs a
        [filters] chain (mail authentication's checks or a filter): its threads ask DNS.""",
    )
    client_message_rate: int = setting(
        0,
        check=_integer("messages", minimum=0),
        doc="""Messages (MAIL commands) one client address may send to the smtp listener in
        rate_window seconds; past it, 421 4.7.0 and the connection closes. 0: no limit.""",
    )
    client_recipient_rate: int = setting(
        0,
        check=_integer("recipients", minimum=0),
        doc="""Recipients (RCPT commands) one client address may give the smtp listener in
        rate_window seconds; past it, 421 4.7.0 and the connection closes. 0: no limit.""",
    )
    rate_window: float = setting(
        60.0,
        check=_seconds,
        doc="""The sliding window, in seconds, of client_message_rate and
        client_recipient_rate.""",
    )


@dataclass(frozen=True)
class POP3Config:
    """[pop3]: limits of the POP3 server."""

    idle_timeout: float = setting(
        600.0,
        check=_seconds_at_least(600, "RFC 1939 3: 10 minutes"),
        doc="""Seconds a POP3 client may stay silent before the connection is closed (RFC 1939
        section 3 asks for at least 10 minutes).""",
    )
    session_timeout: float = setting(
        4 * 3600.0,
        check=_seconds,
        doc="""Seconds a whole POP3 connection may last, however busy; long enough to download a
        large mailbox over a slow line. Nothing is deleted when it ends this way.""",
    )


@dataclass(frozen=True)
class IMAPConfig:
    """[imap]: limits of the IMAP server."""

    idle_timeout: float = setting(
        1800.0,
        check=_seconds_at_least(1800, "RFC 9051 5.4: 30 minutes"),
        doc="""Seconds an IMAP client may stay silent (IDLE included) before the connection is
        closed; RFC 9051 section 5.4 asks for at least 30 minutes. Before login it is 3
        minutes, as Dovecot's.""",
    )
    max_literal_size: int = setting(
        50 * MiB,
        check=_integer("bytes", example="e.g. 52428800 for 50 MiB"),
        doc="""Largest literal a client may send, in bytes: this bounds APPEND, so keep it at
        least smtp.max_message_size or users can't save in Sent what they could send. Default
        52428800 bytes, 50 MiB.""",
    )
    sort_cache_messages: int = setting(
        50_000,
        check=_integer("messages", minimum=0, maximum=10_000_000, example="e.g. 200000, or 0"),
        doc="""Messages whose SORT and THREAD keys (dates, subjects, addresses, Message-IDs)
        stay in memory after the session that loaded them, for the next session of the same
        mailbox: webmails log in for each page and sort the whole mailbox each time. A message
        costs some 300-600 bytes; the least recently sorted mailbox goes first. 0 keeps them
        only for the session's selection.""",
    )


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise _Invalid("expected one of " + ", ".join(f'"{a}"' for a in allowed))
        return value

    return check


def _dsn(value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
        raise _Invalid('expected a connection string like "host=db1 dbname=mail" in quotes')
    return value


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _bucket(value: Any) -> str:
    if not isinstance(value, str) or (value and not _BUCKET.match(value)):
        raise _Invalid('expected an S3 bucket name such as "mail-bodies" (3-63 of a-z 0-9 . -)')
    return value


def _s3_endpoint(value: Any) -> str:
    expected = 'expected an http:// or https:// URL such as "https://s3.example.net", or ""'
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise _Invalid(expected)
    if value and not re.match(r"^https?://[^/?#]+/?$", value):
        raise _Invalid(expected)
    return value.rstrip("/")


def _region(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-z0-9-]{0,32}$", value):
        raise _Invalid('expected a region name such as "eu-west-1", or ""')
    return value


def _key_prefix(value: Any) -> str:
    if (
        not isinstance(value, str)
        or len(value) > 200
        or value.startswith("/")
        or any(not c.isprintable() or c.isspace() for c in value)
    ):
        raise _Invalid('expected a key prefix such as "mail/" (no spaces, not starting with /)')
    return value


def _access_key(value: Any) -> str:
    if not isinstance(value, str) or any(not c.isprintable() or c.isspace() for c in value):
        raise _Invalid('expected an access key id in quotes, or ""')
    return value


@dataclass(frozen=True)
class StoreConfig:
    """[store]: where mail is kept, and the store's thread pool."""

    backend: str = setting(
        "maildir",
        check=_choice("maildir", "memory", "postgres"),  # txmailhost/store/backends.py's names
        doc="""Where mail is kept. "maildir": Maildir++ under DATA/mail, readable by mutt and
        Dovecot, durable. "postgres": in the PostgreSQL database named by store.dsn, which
        several txmailhost nodes can share (docs/scaling.rst; needs the "postgres" extra,
        psycopg). "memory": in the server's memory, for tests and applications that
        embed txmailhost; every message is LOST when the server stops, and only message size
        limits and quotas bound it. The admin CLI can't reach that memory: `user add` creates
        no mailboxes there (the server creates them on first use).""",
    )

    dsn: str = setting(
        "",
        check=_dsn,
        doc="""The PostgreSQL database of backend = "postgres", as a libpq connection string
        ("host=db1 dbname=mail user=txmailhost") or URI ("postgresql://txmailhost@db1/mail").
        Keep the password out of this file: libpq reads it from ~/.pgpass or the file named
        by passfile=. The schema is created or upgraded when the server starts
        (`txmailhost db upgrade` does it by hand).""",
    )

    accounts: str = setting(
        "sqlite",
        check=_choice("sqlite", "postgres"),
        doc="""Where users, domains, aliases, forwards and quotas are kept. "sqlite":
        DATA/accounts.sqlite of this node. "postgres": the database of store.dsn, so that
        every node sharing it knows the same users (a user added with the CLI on one node
        logs in on all); docs/scaling.rst.""",
    )

    max_mailboxes: int = setting(
        1000,
        check=_integer("mailboxes", minimum=0, maximum=1_000_000),
        doc="""Most mailboxes (folders, INBOX included) a user may have: a CREATE beyond it
        gets NO [LIMIT], the webmail says so and Sieve's fileinto :create keeps the message
        in INBOX. Only what users do is limited: the CLI's restore and moving in from
        Dovecot make as many as they bring. 0: no limit.""",
    )
    threads: int = setting(
        8,
        check=_integer("threads", maximum=256),
        doc="""Threads that run blocking disk work (fsync, index updates, large reads) so the
        network loop never waits on the disk. More helps on fast SSDs with many clients.""",
    )

    text_index: bool = setting(
        True,
        check=_boolean,
        doc="""Keep a full-text index of each Maildir folder (txmailhost-text.sqlite beside
        its index) so IMAP SEARCH TEXT, BODY, SUBJECT, FROM, TO, CC and BCC read only the
        messages that may match instead of every message. Results are the same either way.
        Mail is indexed by the first search after it arrives, never during delivery; false
        searches by reading every message, as the memory and PostgreSQL stores always do.
        `txmailhost index rebuild` builds it again (docs/imap.rst).""",
    )

    blobs: str = setting(
        "postgres",
        check=_choice("postgres", "s3"),
        doc="""Where backend = "postgres" keeps message bodies. "postgres": in the database
        (bytea, 1 MiB chunks), for modest installations. "s3": in an S3-compatible object
        store (AWS S3, MinIO, Ceph...; the s3_* keys below; needs the "s3" extra, boto3): each
        body is stored there, and acknowledged, before the row naming it commits.
        Bodies already stored stay where they are when this changes. Objects of removed
        messages are deleted after the removal commits; `txmailhost db gc` reaps any a crash
        left behind (docs/scaling.rst).""",
    )

    s3_endpoint: str = setting(
        "",
        check=_s3_endpoint,
        doc="""URL of the object store for blobs = "s3" ("https://minio.example.net:9000").
        Empty: AWS S3 in s3_region.""",
    )

    s3_bucket: str = setting(
        "",
        check=_bucket,
        doc="""The bucket message bodies go to (it must exist); needed with blobs = "s3".""",
    )

    s3_region: str = setting(
        "",
        check=_region,
        doc="""The bucket's region ("eu-west-1"). Empty: AWS_DEFAULT_REGION, else us-east-1.""",
    )

    s3_prefix: str = setting(
        "",
        check=_key_prefix,
        doc="""Prepended to every object key ("mail/"), so one bucket can hold other things:
        `db gc` only ever deletes keys under it that txmailhost made.""",
    )

    s3_access_key: str = setting(
        "",
        check=_access_key,
        doc="""The access key id. Empty (with s3_secret_key_file): boto3's usual sources,
        AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance role.""",
    )

    s3_secret_key_file: str = setting(
        "",
        check=_path,
        doc="""File whose first line is the secret access key (keep it mode 0600), relative
        to the data directory; the key never goes in this file, and is never logged.""",
    )


def _delimiter(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1 or (value and value not in "+-_=#~"):
        raise _Invalid('expected one of + - _ = # ~, or "" to turn plus-addressing off')
    return value


def _optional_address(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid('expected an address in quotes, or ""')
    if value and (value.count("@") != 1 or any(c.isspace() for c in value)):
        raise _Invalid('expected an address like postmaster@example.org, or ""')
    return value.lower()


@dataclass(frozen=True)
class RoutingConfig:
    """[routing]: how recipient addresses map to mailboxes (aliases live in the database)."""

    recipient_delimiter: str = setting(
        "+",
        check=_delimiter,
        doc="""Plus-addressing (RFC 5233): mail for alice+anything@ goes to alice@. Set the
        character that separates the tag, or "" to turn it off.""",
    )
    plus_folders: bool = setting(
        False,
        check=_boolean,
        doc="""When true, alice+lists@ is delivered into alice's folder "lists" if she has one
        (the tag as written; otherwise her INBOX), so users can sort mail by the address they
        gave out without writing filters.""",
    )
    postmaster: str = setting(
        "",
        check=_optional_address,
        doc="""Who reads mail for postmaster@ and abuse@ of every domain (RFC 5321 4.5.1 and RFC
        2142 require them) unless an alias says otherwise. Empty: the oldest account of the
        domain the mail was sent to.""",
    )
    quota_full: str = setting(
        "temporary",
        check=_choice("temporary", "permanent"),
        doc="""What a sender hears for a recipient whose quota is used up: "temporary" (452
        4.2.2, the sender retries for days while the user makes room) or "permanent" (552
        5.2.2, the sender bounces the message at once).""",
    )


def _plaintext_sources(value: Any) -> tuple[str, ...]:
    expected = (
        'expected a list of "same-address", "loopback" or networks ("192.0.2.0/24");'
        " [] for TLS always"
    )
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(expected)
    from txmailhost.peer import PlaintextAuth

    for item in value:
        try:
            PlaintextAuth([item])
        except ValueError:
            raise _Invalid(f"{expected}; {item!r} is none of them") from None
    return tuple(value)


@dataclass(frozen=True)
class SecurityConfig:
    """[security]: defences shared by every protocol (security.md)."""

    login_failures_per_ip: int = setting(
        10,
        check=_integer("failures"),
        doc="""Failed logins (SMTP AUTH, IMAP, POP3 together) from one client address (an IPv6
        /64) within login_failure_window after which that address is refused without checking
        passwords until the window has passed. Each failure before that is answered after a
        growing delay (0.5 s, 1 s, 2 s, ... 8 s).""",
    )
    login_failures_per_account: int = setting(
        30,
        check=_integer("failures"),
        doc="""Failed logins against one account, from anywhere, within login_failure_window
        after which further attempts on it are temporarily refused (stops attacks spread over
        many addresses).""",
    )
    login_failure_window: float = setting(
        900.0,
        check=_seconds,
        doc="""Seconds a failed login is remembered for the two limits above.""",
    )
    credential_cache_ttl: int = setting(
        3600,
        check=_integer("seconds", minimum=0),
        doc="""Seconds a verified password is remembered (in memory, as an HMAC under a key
        drawn at each start), so a client logging in again skips the slow password hash, as
        Dovecot's auth cache does. A password change or user removal applies at once; wrong
        passwords are never cached. 0 turns the cache off.""",
    )
    credential_cache_size: int = setting(
        10000,
        check=_integer("entries", minimum=0),
        doc="""Most verified passwords kept in that cache (about 200 bytes each); the oldest
        go first. 0 turns the cache off.""",
    )
    max_connections: int = setting(
        1000,
        check=_integer("connections", maximum=MAX_CONNECTIONS),
        doc="""Most simultaneous connections per listener; further ones are refused at once
        with the protocol's "try later" reply (SMTP 421 4.7.0, POP3 -ERR [SYS/TEMP], IMAP
        BYE). Each is an open file: the server raises its open-file limit at start to what
        this needs (docs/admin.rst, "Open files").""",
    )
    max_connections_per_ip: int = setting(
        20,
        check=_integer("connections", maximum=MAX_CONNECTIONS),
        doc="""Most simultaneous connections from one client address per listener.""",
    )
    hide_client_ip_on_submission: bool = setting(
        False,
        check=_boolean,
        doc="""When true, the Received: header added to mail your users submit (ports 587/465,
        after AUTH) names neither their IP address nor their HELO, so recipients can't learn
        where they were.""",
    )
    plaintext_auth_from: tuple[str, ...] = setting(
        ("same-address",),
        check=_plaintext_sources,
        doc="""Where a password may be sent without TLS (SMTP AUTH, IMAP LOGIN, POP3 USER/PASS
        and AUTH PLAIN); everywhere else a client must use STARTTLS/STLS or a TLS port first,
        and password mechanisms aren't advertised until it has. "same-address": the client's
        address is the one it connected to (a program on this machine); "loopback": any of
        127.0.0.0/8 and ::1 (careful: behind a local proxy every client is loopback);
        networks in CIDR form, e.g. "10.0.0.0/8". [] requires TLS always.""",
    )


def _public_url(value: Any) -> str:
    expected = 'expected an https:// URL such as "https://mail.example.org/", or ""'
    if not isinstance(value, str):
        raise _Invalid(expected)
    if value and not re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+/?", value):
        raise _Invalid(expected + " (scheme, host and port only)")
    return value.rstrip("/")


@dataclass(frozen=True)
class WebConfig:
    """[web]: the webmail's sessions and public address (txmailhost/web/)."""

    public_url: str = setting(
        "",
        check=_public_url,
        doc="""The address users type to reach the webmail, e.g. "https://mail.example.org"
        (scheme, host and port): where the plain-HTTP listener redirects to. Empty: the host
        the browser asked for, on the port of listen.web.""",
    )
    session_idle_timeout: float = setting(
        1800.0,
        check=_seconds,
        doc="""Seconds a webmail session may stay unused before it ends and the user must log
        in again.""",
    )
    session_lifetime: float = setting(
        43200.0,
        check=_seconds,
        doc="""Seconds after logging in when a webmail session ends however busy it is.""",
    )
    max_sessions: int = setting(
        10000,
        check=_integer("sessions"),
        doc="""Most webmail sessions kept at once (in memory; a few KiB each); past it the
        least recently used one ends. Sessions end when the server restarts.""",
    )
    mta_sts_mode: str = setting(
        "",
        check=_choice("", "none", "testing", "enforce"),
        doc="""The MTA-STS policy (RFC 8461) served at /.well-known/mta-sts.txt, for senders
        that look up https://mta-sts.YOUR-DOMAIN/: "enforce" (senders must reach an mx below
        over verified TLS), "testing" (they report failures but deliver anyway), "none"
        (withdraws a policy). Empty: no policy file (404). Publish the _mta-sts TXT record
        too (docs/webmail.rst).""",
    )
    mta_sts_mx: tuple[str, ...] = setting(
        (),
        check=_names,
        doc="""The mx patterns of the MTA-STS policy, e.g. ["mx.example.org",
        "*.example.net"]. Empty: server.hostname.""",
    )
    mta_sts_max_age: int = setting(
        604800,
        check=_integer("seconds", maximum=31557600),
        doc="""How long senders may cache the MTA-STS policy, in seconds (RFC 8461 allows up
        to 31557600, a year). Default a week.""",
    )


_TLS_MODES = ("none", "opportunistic", "required", "verify")


def _tls_mode(value: Any) -> str:
    if value not in _TLS_MODES:
        raise _Invalid("expected one of " + ", ".join(repr(m) for m in _TLS_MODES))
    return value


def _tls_domains(value: Any) -> dict[str, str]:
    expected = 'expected a table of domain = TLS mode, e.g. { "example.org" = "verify" }'
    if not isinstance(value, dict):
        raise _Invalid(expected)
    result = {}
    for domain, mode in value.items():
        try:
            result[_hostname(domain)] = _tls_mode(mode)
        except _Invalid as e:
            raise _Invalid(f"{expected}; {domain!r}: {e}") from None
    return result


def _nameservers(value: Any) -> tuple[str, ...]:
    expected = 'expected a list of IP addresses, optionally with a port ("192.0.2.53:5353")'
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(expected)
    for item in value:
        try:
            parse_nameserver(item)
        except ValueError:
            raise _Invalid(f"{expected}; {item!r} is not one") from None
    return tuple(value)


def _smarthost(value: Any) -> str:
    expected = (
        'expected "" or a host name or IP address, optionally with a port ("smtp.example.net:587")'
    )
    if not isinstance(value, str):
        raise _Invalid(expected)
    if not value:
        return value
    host, port = value, "587"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "587"
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:  # not "²", "٣"
        raise _Invalid(expected)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = _hostname(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _username(value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\0\r\n"):
        raise _Invalid("expected a user name as a string")
    return value


@dataclass(frozen=True)
class QueueConfig:
    """[queue]: how the relay queue retries, gives up and limits itself."""

    backend: str = setting(
        "files",
        check=_choice("files", "postgres"),
        doc="""Where mail waiting for other servers is kept. "files": DATA/queue of this node,
        delivered by this node. "postgres": the database of store.dsn, shared by every node
        that uses it: any node delivers any queued message, each recipient exactly once,
        and a node that dies leaves its deliveries to the others once its leases expire
        (lease_time; docs/scaling.rst). Not chosen with store.backend: mail still in
        DATA/queue would be left behind (`txmailhost migrate maildir-to-postgres` moves it).""",
    )
    lease_time: float = setting(
        120.0,
        check=_seconds,
        doc="""With backend = "postgres": seconds a node's claim on a recipient lasts. A live
        node renews its claims every third of this while it delivers; those of a node that
        died are taken by another node this long after its last renewal (or at their next
        retry, if later). The nodes' clocks must agree to well within it (NTP).""",
    )
    retry_min: float = setting(
        300.0,
        check=_seconds,
        doc="""Seconds before the first retry of a temporarily failed delivery; each further
        retry waits twice as long, up to retry_max (Postfix's minimal_backoff_time).""",
    )
    retry_max: float = setting(
        4000.0,
        check=_seconds,
        doc="""Longest wait between two delivery attempts (Postfix's maximal_backoff_time).""",
    )
    max_lifetime: float = setting(
        432000.0,
        check=_seconds,
        doc="""Seconds a message stays queued before undelivered recipients are bounced to the
        sender with status 5.4.7 (default 5 days, Postfix's maximal_queue_lifetime).""",
    )
    delay_warning: float = setting(
        14400.0,
        check=_seconds_or_zero,
        doc="""Seconds after which the sender gets one "delayed" notice (RFC 3464) for mail
        still not delivered; 0 sends none.""",
    )
    max_connections: int = setting(
        100,
        check=_integer("connections", maximum=10000),
        doc="""Most delivery attempts (outgoing SMTP connections) in progress at once.""",
    )
    max_per_domain: int = setting(
        20,
        check=_integer("connections", maximum=10000),
        doc="""Most delivery attempts in progress at once to one destination domain, so a big
        mailing doesn't hammer one provider.""",
    )
    max_hops: int = setting(
        50,
        check=_integer("header fields", maximum=1000),
        doc="""A message with more Received: header fields than this is looping and is
        bounced with 5.4.6 instead of being sent on (RFC 5321 6.3).""",
    )
    return_full_limit: int = setting(
        1048576,
        check=_integer("bytes", maximum=1 << 30),
        doc="""A sender who asked for RET=FULL (RFC 3461) gets the whole undelivered message
        back in the failure report up to this size in bytes; a larger one, and any other
        report, carries its header section only.""",
    )


@dataclass(frozen=True)
class RelayConfig:
    """[relay]: how mail leaves for other servers: DNS, SMTP port, TLS policy."""

    nameservers: tuple[str, ...] = setting(
        (),
        check=_nameservers,
        doc="""DNS servers for MX lookups, as IP addresses (a port may follow: "192.0.2.53:5353").
        Empty: the system's resolver (/etc/resolv.conf).""",
    )
    dns_timeout: float = setting(
        10.0,
        check=_seconds,
        doc="""Seconds one DNS lookup may take before the delivery is deferred.""",
    )
    dnssec: bool = setting(
        False,
        check=_boolean,
        doc="""The nameservers (relay.nameservers, or the system's) are a DNSSEC-validating
        resolver that this server trusts, reached over a path nobody can tamper with (unbound
        or knot-resolver on this machine, say). Their AD bit is then believed, which is what
        DANE needs. Never set it for a resolver across a network you don't control.""",
    )
    dane: bool = setting(
        True,
        check=_boolean,
        doc="""Use DANE (RFC 7672) when relay.dnssec is set: an MX host with DNSSEC-signed
        TLSA records at _25._tcp.HOST gets mail only over TLS with a certificate those
        records match, whatever relay.tls and the domain's MTA-STS policy say.""",
    )
    port: int = setting(
        25,
        check=_integer("port", maximum=65535),
        doc="""TCP port of the receiving mail servers. Always 25 on the internet; other values
        are for tests.""",
    )
    connect_timeout: float = setting(
        30.0,
        check=_seconds,
        doc="""Seconds to wait for a TCP connection to a mail server before trying the next.""",
    )
    tls: str = setting(
        "opportunistic",
        check=_tls_mode,
        doc="""TLS for outgoing mail: "opportunistic" uses STARTTLS when offered (without
        checking the certificate); "required" defers mail to servers without STARTTLS;
        "verify" also needs a certificate valid for the MX host name; "none" never uses
        TLS.""",
    )
    tls_domains: dict = setting(
        default_factory=dict,
        check=_tls_domains,
        doc="""Per-domain exceptions to relay.tls, e.g. { "bank.example" = "verify" }.""",
    )
    tls_ca_file: str = setting(
        "",
        check=_path,
        doc="""PEM file of the certificate authorities that "verify" trusts (every
        certificate in it), relative to the data directory; empty: the system's trust
        store.""",
    )
    mta_sts: bool = setting(
        True,
        check=_boolean,
        doc="""Honour the MTA-STS policies (RFC 8461) of destination domains: a domain whose
        policy is in "enforce" mode gets its mail only through the MX hosts it lists, over TLS
        with a verified certificate. Policies are fetched over HTTPS and kept for their
        max_age in DATA/queue/mta-sts/.""",
    )
    tls_reports: bool = setting(
        True,
        check=_boolean,
        doc="""Send SMTP TLS reports (RFC 8460): once a day, each destination domain that
        publishes a _smtp._tls TXT record with a mailto: rua gets the counts of our
        TLS-required sessions to it (successes and failures), as gzip'd JSON.""",
    )
    nxdomain_grace: float = setting(
        3600.0,
        check=_seconds_or_zero,
        doc="""Seconds during which a recipient domain that does not exist (NXDOMAIN), or
        whose mail servers all have no address records, is retried like a temporary
        failure, in case its DNS is being set up or repaired; after that the recipient
        bounces with 5.1.2 (5.4.4 for the missing addresses).""",
    )
    smarthost: str = setting(
        "",
        check=_smarthost,
        doc="""Send all remote mail through this server instead of the recipients' MX hosts
        ("smtp.provider.example:587"; port 587 unless given). Empty: deliver directly.""",
    )
    smarthost_tls: str = setting(
        "required",
        check=_tls_mode,
        doc="""TLS towards the smarthost, one of the relay.tls modes.""",
    )
    smarthost_username: str = setting(
        "",
        check=_username,
        doc="""Username for AUTH PLAIN at the smarthost; empty: no authentication. The password
        is sent only over TLS (or to a loopback address).""",
    )
    smarthost_password_file: str = setting(
        "",
        check=_path,
        doc="""File whose first line is the smarthost password (keep it mode 0600),
        relative to the data directory.""",
    )


# Section name -> (dataclass, doc for the rendered file), in the order the file shows them.
def _filter_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid("expected a list of filter names or 'module:factory' paths")
    return tuple(v.strip() for v in value)


def _filter_settings(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _Invalid("expected a table of tables, one per filter name")
    return {str(k): dict(v) for k, v in value.items()}


@dataclass(frozen=True)
class FiltersConfig:
    """[filters]: content filters run on SMTP mail before it is accepted (docs/filters.rst)."""

    chain: tuple[str, ...] = setting(
        ("greylist", "spam"),
        check=_filter_names,
        doc="""Filters to run, in order: built-in names ("greylist": 451 for a first attempt
        from an unknown client, loopback exempt; "spam": content rules and the learning
        classifier; "clamd": ClamAV; "spamd": SpamAssassin; "rspamd": rspamd's action as the verdict;
        docs/admin.rst), registered
        names (the 'txmailhost.filters' entry point group) or 'package.module:factory'
        paths. Empty: no filtering.""",
    )
    timeout: float = setting(
        30.0,
        check=_seconds,
        doc="""Seconds one filter may take at one stage; a filter that takes longer gets the
        on_error verdict, and the time is logged.""",
    )
    on_error: str = setting(
        "tempfail",
        check=_choice("tempfail", "accept"),
        doc="""What a message gets when a filter fails or times out: "tempfail" (451, the
        client retries later; nothing is lost) or "accept" (as if the filter had said yes).""",
    )
    threads_per_client: int = setting(
        4,
        check=_integer("threads", minimum=0, maximum=FILTER_THREADS),
        doc="""Most of the 8 threads the blocking checks run in (mail authentication's DNS
        lookups, greylisting, clamd, spamd, rspamd) that one client address (an IPv6 /64)
        may hold at once; its further messages wait up to timeout for one of its own to
        finish, then get on_error. A client whose mail makes the checks slow (silent DNS
        servers) then can't make every other client wait. 0: no limit.""",
    )
    settings: dict = setting(
        default_factory=dict,
        check=_filter_settings,
        doc="""Options for each filter, by name: [filters.settings.NAME] key = value, passed
        to the filter's factory as keyword arguments. NAME must be a filter (it may be left
        out of the chain for a while); an option named listeners lists keys of [listen].""",
    )


@dataclass(frozen=True)
class LogConfig:
    """[log]: the server's event log, one line per event, for people and for ``log grep``."""

    file: str = setting(
        "log/txmailhost.log",
        check=_path,
        doc="""File the server writes its events to (SMTP transactions, queue changes, delivery
        attempts, logins, session ends, each with its queue id or user), relative to the data
        directory; "" writes none (twistd's --logfile still gets everything).
        `txmailhost log grep QUEUE_ID|ADDRESS` searches it and its rotated copies.""",
    )
    format: str = setting(
        "text",
        check=_choice("text", "json"),
        doc=""""text": lines like twistd's log; "json": one JSON object a line, with every
        field of the event (queue_id, sender, recipients, user, peer, reply ...) as a key.""",
    )
    max_size: int = setting(
        10 * MiB,
        check=_integer("bytes", minimum=4096),
        doc="""Size at which the file is rotated: it becomes FILE.1, FILE.1 becomes FILE.2 ...""",
    )
    keep: int = setting(
        10,
        check=_integer("files", maximum=1000),
        doc="""Rotated files kept; the oldest beyond this are deleted, so the log takes at most
        (keep + 1) * max_size bytes.""",
    )


def _relay_networks(value: Any) -> tuple[str, ...]:
    expected = 'expected a list of addresses or networks, e.g. ["192.0.2.25", "198.51.100.0/24"]'
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(expected)
    from txmailhost.received import networks

    try:
        networks(value)
    except ValueError as e:
        raise _Invalid(f"{expected}; {e}") from None
    return tuple(value)


@dataclass(frozen=True)
class MailAuthConfig:
    """[mailauth]: DKIM signing and SPF/DKIM/DMARC checks (docs/admin.rst, txmailhost/mailauth)."""

    sign: bool = setting(
        True,
        check=_boolean,
        doc="""DKIM-sign the mail users submit and the bounces this server sends, for every
        domain that has keys ('txmailhost dkim init DOMAIN').""",
    )
    check_inbound: bool = setting(
        True,
        check=_boolean,
        doc="""Check SPF, DKIM and DMARC on mail arriving at the smtp listener and add an
        Authentication-Results header field. Authenticated submission is never checked.""",
    )
    dmarc_reject: str = setting(
        "reject",
        check=_choice("reject", "junk", "tag"),
        doc="""What mail failing DMARC from a domain with p=reject gets: "reject" (550 5.7.1),
        "junk" (delivered to Junk) or "tag" (only the header field).""",
    )
    dmarc_quarantine: str = setting(
        "junk",
        check=_choice("junk", "tag"),
        doc="""What mail failing DMARC from a domain with p=quarantine gets: "junk" or "tag".""",
    )
    spf_fail: str = setting(
        "tag",
        check=_choice("reject", "tag"),
        doc="""What an SPF "fail" (a -all policy that excludes the client) gets at MAIL FROM:
        "reject" (550 5.7.23) or "tag" (only the header field; DMARC still judges).""",
    )
    trusted_relays: tuple[str, ...] = setting(
        (),
        check=_relay_networks,
        doc="""Your own relays that hand this server mail they received from others: a front
        or backup MX, or "127.0.0.1" for fetchmail or getmail delivering over SMTP. For their
        mail SPF is checked for the client they received it from, as the Received: field they
        added says, not for the relay itself (no sender's SPF record lists it), and they are
        never refused at MAIL FROM. List only machines that write that field truthfully and
        that nobody else can send through: a client they list passes SPF for any domain whose
        record allows it. Addresses or networks, e.g. ["192.0.2.25", "198.51.100.0/24"].""",
    )
    dns_timeout: float = setting(
        5.0,
        check=_seconds,
        doc="""Seconds one SPF/DKIM/DMARC DNS lookup may take; then it is a temporary error
        (451 4.7.x only where the policy would reject, else noted in the header field).""",
    )
    reports_local_part: str = setting(
        "dmarc-reports",
        check=_username,
        doc="""Local part of the address 'txmailhost dns' publishes for DMARC aggregate reports
        (rua=mailto:LOCAL@DOMAIN); TLS reports (TLS-RPT) go to tls-reports@DOMAIN.""",
    )


@dataclass(frozen=True)
class SieveConfig:
    """[sieve]: users' Sieve scripts (docs/sieve.rst) and the ManageSieve server."""

    max_scripts: int = setting(
        20,
        check=_integer("scripts", maximum=10000),
        doc="""Most scripts one user may keep; PUTSCRIPT of one more gets NO
        (QUOTA/MAXSCRIPTS).""",
    )
    max_script_size: int = setting(
        64 * 1024,
        check=_integer("bytes", minimum=100, maximum=16 * MiB),
        doc="""Largest script, in bytes (PUTSCRIPT beyond it: NO (QUOTA/MAXSIZE)). Default
        65536.""",
    )
    max_redirects: int = setting(
        4,
        check=_integer("redirects", minimum=0, maximum=100),
        doc="""Most redirect actions one script run may take for one message; more is a script
        error, and the message stays in INBOX.""",
    )
    max_steps: int = setting(
        10000,
        check=_integer("steps", minimum=10),
        doc="""Most commands and tests one script run may evaluate before it is stopped as an
        error (the message stays in INBOX).""",
    )


def _optional_hostname(value: Any) -> str:
    return "" if value == "" else _hostname(value)


@dataclass(frozen=True)
class SRSConfig:
    """[srs]: the Sender Rewriting Scheme for mail forwarded to other servers (txmailhost/srs.py)."""

    domain: str = setting(
        "",
        check=_optional_hostname,
        doc="""The domain of rewritten senders, e.g. "fwd.example.org": mail we forward
        elsewhere (aliases, forwards, Sieve redirect) from a sender of another domain leaves
        as SRS0=...@this domain, so the receiver's SPF check passes, and bounces to those
        addresses are sent on to the original sender. Its MX (or A record) must point to this
        server and its SPF record allow it. Empty (the default): forwarded mail keeps its
        original sender.""",
    )
    max_age_days: int = setting(
        21,
        check=_integer("days", maximum=1000),
        doc="""Days a rewritten sender stays valid for bounces; older ones are refused with
        550 5.1.1.""",
    )


_SECTIONS: dict[str, tuple[type, str]] = {
    "server": (ServerConfig, "This server's identity."),
    "listen": (
        ListenConfig,
        "Where each protocol listens. The defaults are loopback-only and unprivileged (ports "
        "25xx, 21xx, 29xx); switch to the production ports when the server should face the "
        "internet.",
    ),
    "tls": (
        TLSConfig,
        "The certificates every TLS listener and STARTTLS use: one by default, others by SNI.",
    ),
    "smtp": (SMTPConfig, "SMTP server limits (incoming mail and submission)."),
    "pop3": (POP3Config, "POP3 server limits."),
    "imap": (IMAPConfig, "IMAP server limits."),
    "store": (StoreConfig, "Mail store tuning."),
    "security": (SecurityConfig, "Login throttling, connection limits and privacy."),
    "routing": (RoutingConfig, "Recipient addresses: plus-addressing, postmaster."),
    "queue": (QueueConfig, "The relay queue: retries, expiry, delay warnings, limits."),
    "relay": (RelayConfig, "Outgoing mail to other servers: DNS, port, TLS policy."),
    "filters": (FiltersConfig, "Content filters on incoming and submitted mail."),
    "log": (LogConfig, "The event log: where, in which format, how much of it is kept."),
    "mailauth": (MailAuthConfig, "DKIM signing; SPF, DKIM and DMARC checks of incoming mail."),
    "sieve": (SieveConfig, "Users' Sieve scripts, vacation replies and ManageSieve."),
    "srs": (SRSConfig, "Sender rewriting (SRS) for forwarded mail."),
    "web": (WebConfig, "Webmail: sessions and the public address."),
}


@dataclass(frozen=True)
class Config:
    """Everything the service needs to start, validated; paths are absolute."""

    data_dir: str
    config_file: str
    hostname: str
    shutdown_grace: float = 30.0
    workers: int = 1  # a Config built by hand (embedding, tests) is one process
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    log: LogConfig = field(default_factory=LogConfig)
    mailauth: MailAuthConfig = field(default_factory=MailAuthConfig)
    sieve: SieveConfig = field(default_factory=SieveConfig)
    srs: SRSConfig = field(default_factory=SRSConfig)
    web: WebConfig = field(default_factory=WebConfig)

    @property
    def accounts_path(self) -> str:
        return os.path.join(self.data_dir, "accounts.sqlite")

    @property
    def mail_root(self) -> str:
        return os.path.join(self.data_dir, "mail")

    @property
    def queue_dir(self) -> str:
        return os.path.join(self.data_dir, "queue")

    @property
    def tls_dir(self) -> str:
        return os.path.join(self.data_dir, "tls")


def default_tls_paths(data_dir: str) -> tuple[str, str]:
    """Where the certificate and key live when [tls] leaves them empty."""
    tls_dir = os.path.join(os.path.abspath(data_dir), "tls")
    return os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")


# -- loading ------------------------------------------------------------------------------------


def load_config(data_dir: str, config_file: str | None = None) -> Config:
    """Read and validate ``config_file``, or ``DATA/txmailhost.toml`` when it is None.

    A missing default file means "all defaults" (a fresh data directory); a missing file that
    was named explicitly is an error. Raises :class:`ConfigError` with every problem found.
    """
    data_dir = os.path.abspath(data_dir)
    path = (
        os.path.abspath(config_file) if config_file is not None else default_config_path(data_dir)
    )
    try:
        raw = _read_config_file(path)
    except FileNotFoundError:
        if config_file is not None:
            raise ConfigError([f"{path}: config file not found"]) from None
        raw = None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the config file: {e.strerror}"]) from None
    document = {} if raw is None else _parse_toml(path, raw)
    return _build(data_dir, path, document)


def _read_config_file(path: str) -> bytes:
    """The config file's octets, if it is a regular file of at most ``MAX_CONFIG_SIZE``.
    ``--config /dev/zero`` read for ever (and a FIFO waited for a writer that never came),
    so the file is opened without blocking and judged on its descriptor before it is read;
    anything else is a ``ConfigError`` naming it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError([f"{path}: cannot read the config file: Is a directory"])
        if not stat.S_ISREG(mode):
            raise ConfigError([f"{path}: the config file is not a regular file"])
        raw = f.read(MAX_CONFIG_SIZE + 1)
    if len(raw) > MAX_CONFIG_SIZE:
        raise ConfigError([f"{path}: the config file is larger than {MAX_CONFIG_SIZE} bytes"])
    return raw


def default_config_path(data_dir: str) -> str:
    """``DATA/txmailhost.toml``: the config file used when ``--config`` names none."""
    return os.path.join(data_dir, CONFIG_NAME)


def _parse_toml(path: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: the file is not valid UTF-8"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: {_toml_error(e, text)}"]) from None
    except RecursionError:  # tomllib's parser recurses once per level of nesting
        raise ConfigError([f"{path}: invalid TOML: arrays or tables nested too deeply"]) from None


def _toml_error(error: tomllib.TOMLDecodeError, text: str) -> str:
    """``line N, column M: invalid TOML: reason`` from tomllib's message.

    Python < 3.14 only puts the position in the message text ("... (at line 3, column 7)"),
    and says "at end of document" for errors found at the end, where we name the last line.
    """
    message = str(error)
    reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", message)
    lineno = getattr(error, "lineno", None)
    colno = getattr(error, "colno", None)
    found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if lineno is None and found:
        lineno, colno = int(found.group(1)), int(found.group(2))
    if lineno is None:
        last_line = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        return f"line {max(last_line, 1)} (end of file): invalid TOML: {reason}"
    return f"line {lineno}, column {colno}: invalid TOML: {reason}"


def _show(value: Any) -> str:
    """A TOML value as an administrator would recognise it in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(data_dir: str, path: str, document: dict[str, Any]) -> Config:
    problems: list[str] = []
    sections: dict[str, Any] = {}
    clean: set[str] = set()  # sections whose keys all passed: only they get cross-key checks
    for name, table in document.items():
        if name not in _SECTIONS:
            if isinstance(table, dict):
                problems.append(
                    f"{path}: [{name}]: unknown section{_suggest(name, list(_SECTIONS))}"
                )
            else:
                owners = [s for s, (cls, _) in _SECTIONS.items() if name in _field_names(cls)]
                hint = f" (did you mean {name} in [{owners[0]}]?)" if owners else ""
                problems.append(f"{path}: {name}: unknown key outside any section{hint}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{path}: {name}: expected a section [{name}], got {_show(table)}")
            continue
        before = len(problems)
        sections[name] = _build_section(path, name, table, problems)
        if len(problems) == before:
            clean.add(name)
    for name, (cls, _doc) in _SECTIONS.items():
        if name not in sections:
            sections[name] = cls()
            clean.add(name)

    tls = sections["tls"]
    if "tls" in clean:
        tls = _resolve_tls(data_dir, path, tls, problems)
    if "listen" in clean:
        _check_listener_conflicts(path, sections["listen"], problems)
    if "filters" in clean:
        _check_filters(path, sections["filters"], problems)
    shared = "store" not in clean or sections["store"].backend != "memory"
    if "server" in clean and sections["server"].workers > 1 and not shared:
        if "workers" in (document.get("server") or {}):
            problems.append(  # each process would have mail of its own
                f"{path}: server.workers = {sections['server'].workers} needs a store the"
                ' processes share; store.backend = "memory" is private to one process'
            )
        else:  # the default (one per core) yields to a store only one process can hold
            sections["server"] = dataclasses.replace(sections["server"], workers=1)
    store = sections["store"]
    if "store" in clean and "postgres" in (store.backend, store.accounts) and not store.dsn:
        which = "backend" if store.backend == "postgres" else "accounts"
        problems.append(f'{path}: store.dsn: {which} = "postgres" needs the database to use')
    if "store" in clean and store.blobs == "s3":
        if store.backend != "postgres":
            problems.append(f'{path}: store.blobs: "s3" is for backend = "postgres"')
        if not store.s3_bucket:
            problems.append(f'{path}: store.s3_bucket: blobs = "s3" needs the bucket to use')
    queue = sections["queue"]
    if "queue" in clean and queue.backend == "postgres" and not store.dsn:
        problems.append(f'{path}: queue.backend: "postgres" needs the database of store.dsn')
    if problems:
        raise ConfigError(problems)
    return Config(
        data_dir=data_dir,
        config_file=path,
        hostname=sections["server"].hostname,
        shutdown_grace=sections["server"].shutdown_grace,
        workers=sections["server"].workers,
        listen=sections["listen"],
        tls=tls,
        smtp=sections["smtp"],
        pop3=sections["pop3"],
        imap=sections["imap"],
        store=_data_relative(data_dir, sections["store"], "s3_secret_key_file"),
        security=sections["security"],
        routing=sections["routing"],
        queue=sections["queue"],
        relay=_data_relative(data_dir, sections["relay"], "tls_ca_file", "smarthost_password_file"),
        filters=sections["filters"],
        log=sections["log"],
        mailauth=sections["mailauth"],
        sieve=sections["sieve"],
        srs=sections["srs"],
        web=sections["web"],
    )


def _data_relative(data_dir: str, section: Any, *keys: str) -> Any:
    """``section`` with the file paths of ``keys`` taken relative to the data directory, as
    ``tls.certificate`` and ``tls.acme_ca_file`` are: the server's working directory is
    wherever it was started from, which a config file can't know."""
    paths = {
        key: os.path.normpath(os.path.join(data_dir, os.path.expanduser(value)))
        for key in keys
        if (value := getattr(section, key))
    }
    return dataclasses.replace(section, **paths) if paths else section


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _build_section(path: str, section: str, table: dict[str, Any], problems: list[str]) -> Any:
    cls, _doc = _SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            known = [f"{section}.{name}" for name in fields]
            problems.append(
                f"{path}: {section}.{key}: unknown key{_suggest(f'{section}.{key}', known)}"
            )
            continue
        try:
            values[key] = fields[key].metadata["check"](value)
        except _Invalid as e:
            problems.append(f"{path}: {section}.{key}: {e}, got {_show(value)}")
    return cls(**values)


def _resolve_tls(data_dir: str, path: str, tls: TLSConfig, problems: list[str]) -> TLSConfig:
    """Absolute certificate and key paths; both configured or neither (a key for the wrong
    certificate is the likely result of setting only one)."""
    if bool(tls.certificate) != bool(tls.key):
        missing = "tls.key" if tls.certificate else "tls.certificate"
        problems.append(
            f"{path}: {missing}: expected a path, since "
            f"{'tls.certificate' if tls.certificate else 'tls.key'} is set "
            "(set both, or neither to use the self-signed pair in DATA/tls)"
        )
        return tls
    if not tls.certificate:
        certificate, key = default_tls_paths(data_dir)
    else:
        certificate = os.path.join(data_dir, os.path.expanduser(tls.certificate))
        key = os.path.join(data_dir, os.path.expanduser(tls.key))
    ca_file = tls.acme_ca_file and os.path.join(data_dir, os.path.expanduser(tls.acme_ca_file))

    def absolute(file: str) -> str:
        return os.path.normpath(os.path.join(data_dir, os.path.expanduser(file)))

    return dataclasses.replace(
        tls,
        certificate=os.path.normpath(certificate),
        key=os.path.normpath(key),
        acme_ca_file=ca_file and os.path.normpath(ca_file),
        sni={name: (absolute(cert), absolute(key)) for name, (cert, key) in tls.sni.items()},
    )


def _binds_overlap(interface: str, other: str) -> bool:
    """Whether binding both addresses to one port fails: same address, or a wildcard of the
    family ("::" takes IPv4 too, since Twisted leaves IPv6 sockets dual-stack)."""
    if interface == other or "::" in (interface, other):
        return True
    any4 = ("", "0.0.0.0")
    if interface in any4 or other in any4:
        specific = other if interface in any4 else interface
        return specific in any4 or ipaddress.ip_address(specific).version == 4
    return False


def _recorded_listen(description: str) -> _ListenRecorder:
    """What listening on a valid description asks of the reactor, by Twisted's parser."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Factory

    reactor = _ListenRecorder()
    serverFromString(reactor, description).listen(Factory())
    return reactor


def _check_listener_conflicts(path: str, listen: ListenConfig, problems: list[str]) -> None:
    """Two listeners on one TCP port would fail at start with a bare "address in use", and
    two on one UNIX socket with "Cannot acquire lock", leaving the socket and its lock file
    behind."""
    seen: dict[int, list[tuple[str, str]]] = {}
    sockets: dict[str, str] = {}  # absolute path -> the listener on it
    for name in _field_names(ListenConfig):
        description = getattr(listen, name)
        kind = description.split(":", 1)[0].strip().lower()
        if kind not in ("tcp", "tcp6", "unix"):
            continue
        plain = _plain_tcp(description)
        if plain is not None:
            port, interface = plain
        else:
            reactor = _recorded_listen(description)
            if kind == "unix":
                socket = reactor.unixServers[0][0]
                other = sockets.setdefault(os.path.abspath(socket), name)
                if other != name:
                    problems.append(
                        f"{path}: listen.{name}: socket {socket} is already used by listen.{other}"
                    )
                continue
            (port, _factory, _backlog, interface), *_ = reactor.tcpServers
        if port == 0:  # an ephemeral port never conflicts
            continue
        for other, other_interface in seen.get(port, []):
            if _binds_overlap(interface, other_interface):
                problems.append(
                    f"{path}: listen.{name}: port {port} is already used by listen.{other}"
                )
                break
        seen.setdefault(port, []).append((name, interface))


def _check_filters(path: str, filters: FiltersConfig, problems: list[str]) -> None:
    """What [filters] gets wrong without a filter being loaded (the filter names and their
    options are checked where the chain is built, filters/registry.py): a filter named twice
    would judge every message twice, and a ``listeners`` option naming no [listen] key
    ("smtpp") silently switches its filter off."""
    for position, name in enumerate(filters.chain):
        if name in filters.chain[:position]:
            problems.append(f"{path}: filters.chain: {name!r} is named twice")
    listeners = _field_names(ListenConfig)
    for name, options in filters.settings.items():
        given = options.get("listeners")
        key = f"filters.settings.{name}.listeners"
        if given is None:
            continue
        if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
            problems.append(
                f'{path}: {key}: expected an array such as ["smtp"], got {_show(given)}'
            )
            continue
        for listener in given:
            if listener not in listeners:
                problems.append(
                    f"{path}: {key}: {listener!r} is not a listener of [listen]"
                    + _suggest(listener, listeners)
                )


# -- the default file ---------------------------------------------------------------------------

_HEADER = """\
# txmailhost configuration (TOML, https://toml.io).
#
# Every setting is listed below, commented out, with its default value and what it does:
# uncomment a line and change it to override the default. Sizes are integers of bytes,
# timeouts are numbers of seconds. Check this file with `txmailhost check-config`; the server
# reads it when it starts.
"""


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def render_default_config(hostname: str | None = None) -> str:
    """The commented config file: every key with its default and doc, from the schema above.

    With ``hostname`` (``txmailhost init --hostname``), ``server.hostname`` is written
    uncommented with that value; everything else stays at its default.
    """
    if hostname is not None:
        try:
            hostname = _hostname(hostname)
        except _Invalid as e:
            raise ConfigError([f"server.hostname: {e}, got {_show(hostname)}"]) from None
    out = [_HEADER.rstrip("\n")]
    for section, (cls, section_doc) in _SECTIONS.items():
        out.append("")
        out.extend(_comment(section_doc, width=96))
        out.append(f"[{section}]")
        defaults = cls()
        for f in dataclasses.fields(cls):
            out.append("")
            out.extend(_comment(f.metadata["doc"], width=96))
            if section == "server" and f.name == "hostname" and hostname is not None:
                out.append(f"{f.name} = {_toml_value(hostname)}")
            else:
                out.append(f"# {f.name} = {_toml_value(getattr(defaults, f.name))}")
    return "\n".join(out) + "\n"


def _comment(text: str, width: int) -> list[str]:
    return textwrap.wrap(
        text, width=width, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )
