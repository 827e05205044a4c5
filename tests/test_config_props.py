"""Property tests of the config loader (config.py): any TOML value for any key gives a working
``Config`` or a ``ConfigError`` that names the key, never another exception; any file gives a
``Config`` or a ``ConfigError``."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import tempfile
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost import config as config_module
from txmailhost.config import ConfigError, load_config

pytestmark = pytest.mark.fuzz

KEYS = [
    (section, f.name)
    for section, (cls, _doc) in config_module._SECTIONS.items()
    for f in dataclasses.fields(cls)
]

# Keys whose values are text (strings, lists of them, tables): where near-valid strings matter.
TEXT_KEYS = [
    (section, f.name)
    for section, (cls, _doc) in config_module._SECTIONS.items()
    for f in dataclasses.fields(cls)
    if not isinstance(getattr(cls(), f.name), bool | int | float)
]

_NEAR_VALID = [
    "", "tcp:25", "tcp:70000", "tcp:-1", "tcp:25:interface=::1", "tcp:25:interface=bogus",
    "tcp6:0", "ssl:465", "unix:/tmp/x.sock", "systemd:domain=INET:index=0", "tcp:", "tcp:²",
    "mail.example.org", "192.0.2.1", "[::1]:25", "[::1]:", "host:²", "host:٣", "a:b:c", "a:0",
    "same-address", "loopback", "10.0.0.0/8", "10.0.0.1/8", "::/0", "verify", "none", "+", "-",
    "temporary", "permanent", "postmaster@example.org", "a@b@c", "~/cert.pem", "\0",
    "192.0.2.53:5353", "[2001:db8::1]:53", "1.2.3.4:99999", "é.example", "xn--e-ufa.example",
]  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_NEAR_VALID),
    st.text(max_size=30),
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(_NEAR_VALID)), inner, max_size=3
        ),
    ),
    max_leaves=8,
)


def toml(value) -> str:
    """A TOML rendering of ``value`` (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_string(k)} = {toml(v)}" for k, v in value.items()) + "}"


def _string(text: str) -> str:
    """A TOML basic string: control characters, DEL, quote and backslash escaped."""
    escaped = (c if 0x20 <= ord(c) != 0x7F and c not in '"\\' else f"\\u{ord(c):04x}" for c in text)
    return '"' + "".join(escaped) + '"'


def _load(text: str):
    with tempfile.TemporaryDirectory() as data_dir:
        path = os.path.join(data_dir, "txmailhost.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return load_config(data_dir)


@given(st.sampled_from(KEYS), toml_values)
def test_any_value_for_any_key_loads_or_names_the_key(key, value):
    section, name = key
    text = f"[{section}]\n{name} = {toml(value)}\n"
    assert tomllib.loads(text)[section][name] is not None  # the test's own TOML is valid
    try:
        loaded = _load(text)
    except ConfigError as error:
        assert f"{section}.{name}" in str(error), str(error)
        return
    assert getattr(loaded, section, None) is not None or section == "server"


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(list(config_module._SECTIONS)), st.text(max_size=8)),
        st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from([name for _s, name in KEYS]), st.text(max_size=8)),
                toml_values,
                max_size=4,
            ),
            toml_values,
        ),
        max_size=4,
    )
)
def test_any_document_loads_or_is_a_config_error(document):
    lines = []
    for section, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{_string(section)}]")
            lines.extend(f"{_string(k)} = {toml(v)}" for k, v in table.items())
        else:
            lines.insert(0, f"{_string(section)} = {toml(table)}")
    try:
        _load("\n".join(lines) + "\n")
    except ConfigError as error:
        assert error.problems


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_file_loads_or_is_a_config_error(raw):
    with tempfile.TemporaryDirectory() as data_dir:
        path = os.path.join(data_dir, "txmailhost.toml")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            load_config(data_dir)
        except ConfigError as error:
            assert all(problem.startswith(path) for problem in error.problems)


def test_every_key_with_every_tricky_value_loads_or_names_the_key():
    """The near-valid strings above, each under every key: hypothesis draws too few of these
    combinations per run to be sure of meeting each one."""
    with tempfile.TemporaryDirectory() as data_dir:
        path = os.path.join(data_dir, "txmailhost.toml")
        for section, name in TEXT_KEYS:
            for value in [*_NEAR_VALID, [*_NEAR_VALID[:8]], {"example.org": "verify"}]:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(f"[{section}]\n{name} = {toml(value)}\n")
                try:
                    load_config(data_dir)
                except ConfigError as error:
                    assert f"{section}.{name}" in str(error), (section, name, value, str(error))


@pytest.mark.parametrize("value", ["smtp.example.net:²", "[2001:db8::1]:²", "host:٣", "host:0"])
def test_smarthost_port_that_is_no_ascii_number_is_a_config_error(value):
    # Found by fuzzing: "²".isdigit() but int("²") raised ValueError out of load_config, and
    # "٣" (Arabic-Indic three) was accepted as port 3 and written back as "host:٣".
    with pytest.raises(ConfigError, match="relay.smarthost"):
        _load(f"[relay]\nsmarthost = {_string(value)}\n")


@pytest.mark.parametrize(
    "value", ["192.0.2.53:99999", "192.0.2.53:-1", "192.0.2.53:٣", "[2001:db8::1]:0", "[::1]: 5"]
)
def test_nameserver_port_out_of_range_is_a_config_error(value):
    with pytest.raises(ConfigError, match="relay.nameservers"):
        _load(f"[relay]\nnameservers = [{_string(value)}]\n")


_SNI_NAMES = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="aBü*.-_xn9\u0301\u200d\u3002 ", max_size=30),
    st.sampled_from(["*.b.example", "*.*.example", "a.*.example", "*.", "*", "xn--.example",
                     "mail.bücher.example.", "Ⅻ.example", "a" * 64 + ".example", "ß.example"]),
)  # fmt: skip


@given(_SNI_NAMES)
def test_a_tls_sni_name_is_refused_with_its_entry_or_kept_as_sni_compares_it(name: str) -> None:
    """``[tls] sni`` names go through IDNA: whatever the text, it is refused with the entry
    named (never another exception) or kept lower-case, ASCII, without a trailing dot, and
    a wildcard only as the whole left-most label."""
    try:
        pairs = config_module._sni_certificates({name: ["c.pem", "c.key"]})
    except config_module._Invalid as e:
        assert repr(name) in str(e)
        return
    (kept,) = pairs
    assert kept.isascii() and kept == kept.lower() and not kept.endswith(".")
    host = kept.removeprefix("*.")
    assert "*" not in host and config_module._hostname(host) == host


_ENDPOINT_PIECES = st.sampled_from(
    ["tcp", "TCP", "tcp6", " tcp", "unix", ":", "=", "\\", "interface", "backlog", "port",
     "0", "25", "025", "65535", "65536", "99999", "123456", "٣", "²", "127.0.0.1", "1.2.3",
     "::1", "\\:\\:", "..", "", " ", "5"]
)  # fmt: skip
_DESCRIPTIONS = st.one_of(
    st.from_regex(config_module._PLAIN_TCP, fullmatch=True),
    st.lists(_ENDPOINT_PIECES, max_size=8).map("".join),
    st.text(alphabet="tcp6:=\\0123456789.interfacebklog ", max_size=30),
)


@given(_DESCRIPTIONS)
def test_a_plain_tcp_listener_is_read_as_twisted_reads_it(description: str) -> None:
    """``_plain_tcp`` spares the CLI Twisted's endpoint parser (and the OpenSSL it imports)
    for "tcp:PORT[:interface=ADDR]": whatever it reads, Twisted reads the same port and
    interface; whatever else, it leaves to Twisted (None)."""
    plain = config_module._plain_tcp(description)
    if plain is None:
        return
    assert description.startswith("tcp:")
    reactor = config_module._recorded_listen(description)
    ((port, _factory, _backlog, interface),) = reactor.tcpServers
    assert plain == (port, interface)
