"""IMAP4rev2 (RFC 9051), SEARCHRES (RFC 5182), UTF8=ACCEPT (RFC 6855), PREVIEW (RFC 8970) and
METADATA (RFC 5464) on the real server, driven by Python's imaplib (which knows ENABLE and UTF-8
mode) over loopback."""

from __future__ import annotations

import imaplib
import socket

import pytest

from tests.imap.support import listening_port

PASSWORD = "secret-pw"
H = "127.0.0.1"
ALICE = "alice@example.test"
MSG = b"From: bob@example.test\r\nSubject: rev2 %d\r\n\r\nbody\r\n"


def ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def login(server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(H, listening_port(server, "imap"), timeout=10)
    assert "IMAP4REV2" in client.capabilities
    client.login(ALICE, PASSWORD)
    return client


@pytest.mark.shared_server
def test_imaplib_session_after_enable_imap4rev2(server):
    client = login(server)
    ok(client.create("rev2box"))
    for i in range(3):
        ok(client.append("rev2box", None, None, MSG % i))
    ok(client.enable("IMAP4rev2"))
    assert client.untagged_responses.pop("ENABLED") == [b"IMAP4rev2"]
    ok(client.select("rev2box"))
    assert client.untagged_responses.pop("LIST") == [b'(\\HasNoChildren) "/" "rev2box"']
    assert "RECENT" not in client.untagged_responses
    typ, data = client.search(None, "ALL")
    assert typ == "OK" and data == [None]  # no SEARCH response: ESEARCH instead
    esearch = client.untagged_responses.pop("ESEARCH")
    assert esearch[0].endswith(b") ALL 1:3")
    ok(client.store("2", "+FLAGS", "\\Deleted"))
    status = ok(client.status("rev2box", "(MESSAGES DELETED)"))
    assert status == [b'"rev2box" (MESSAGES 3 DELETED 1)']
    ok(client.close())
    ok(client.delete("rev2box"))
    client.logout()


@pytest.mark.shared_server
def test_imaplib_search_save_and_fetch_dollar(server):
    client = login(server)
    ok(client.create("searchres"))
    for i in range(4):
        ok(client.append("searchres", None, None, MSG % i))
    ok(client.select("searchres"))
    typ, data = client._simple_command("SEARCH", "RETURN", "(SAVE)", "SUBJECT", '"rev2 2"')
    assert typ == "OK"
    data = ok(client.fetch("$", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert data[0][0].startswith(b"3 (") and b"rev2 2" in data[0][1]
    ok(client.close())
    ok(client.delete("searchres"))
    client.logout()


@pytest.mark.shared_server
def test_imaplib_in_utf8_mode_sees_and_makes_utf8_names(server):
    client = login(server)
    ok(client.enable("UTF8=ACCEPT"))
    assert client.untagged_responses.pop("ENABLED") == [b"UTF8=ACCEPT"]
    ok(client.create('"Привет/Мир"'))
    names = ok(client.list('""', '"Привет*"'))
    assert '(\\HasChildren) "/" "Привет"'.encode() in names
    assert '(\\HasNoChildren) "/" "Привет/Мир"'.encode() in names
    ok(client.select('"Привет/Мир"'))
    ok(client.close())
    other = login(server)  # a rev1 session sees the same folder in modified UTF-7
    assert b'"&BB8EQAQ4BDIENQRC-/&BBwEOARA-"' in b" ".join(ok(other.list()))
    other.logout()
    ok(client.delete('"Привет/Мир"'))
    ok(client.delete('"Привет"'))
    client.logout()


@pytest.mark.shared_server
def test_append_utf8_literal8_round_trips_over_tcp(server):
    message = "From: Jörg <j@example.test>\r\nSubject: Grüße\r\n\r\nÜber\r\n".encode()
    s = socket.create_connection((H, listening_port(server, "imap")), 10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a LOGIN {ALICE} {PASSWORD}\r\nb ENABLE UTF8=ACCEPT\r\n".encode())
    assert f.readline().startswith(b"a OK")
    assert f.readline() == b"* ENABLED UTF8=ACCEPT\r\n"
    assert f.readline().startswith(b"b OK")
    name = '"Ünïcode"'.encode()
    s.sendall(b"c CREATE %s\r\nd APPEND %s UTF8 (~{%d+}\r\n" % (name, name, len(message)))
    s.sendall(message + b")\r\ne EXAMINE %s\r\nf FETCH 1 BODY[]\r\n" % name)
    lines = []
    while not (line := f.readline()).startswith(b"f "):
        lines.append(line)
    assert line == b"f OK FETCH completed\r\n"
    transcript = b"".join(lines)
    assert b"d OK [APPENDUID" in transcript
    assert b"{%d}\r\n%s)" % (len(message), message) in transcript
    s.sendall(b"g CLOSE\r\ng2 DELETE %s\r\nh LOGOUT\r\n" % name)
    s.close()


@pytest.mark.shared_server
def test_imaplib_fetch_preview(server):
    client = login(server)
    ok(client.create("previewbox"))
    body = b"Subject: p\r\nContent-Type: text/plain\r\n\r\nShort   note\r\nfor the list.\r\n"
    ok(client.append("previewbox", None, None, body))
    ok(client.select("previewbox"))
    assert ok(client.fetch("1", "(PREVIEW)")) == [b'1 (PREVIEW "Short note for the list.")']
    ok(client.close())
    ok(client.delete("previewbox"))
    client.logout()


imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))


def test_imaplib_metadata_survives_a_restart(server_template, tmp_path):
    """SETMETADATA is durable: a fresh server of its own, stopped and started again."""
    from tests.e2e.conftest import start_from_template

    proc = start_from_template(server_template, str(tmp_path / "data"))
    try:
        client = login(proc)
        caps = ok(client.capability())[-1]
        assert b"METADATA" in caps.split()
        ok(client._simple_command("SETMETADATA", "INBOX", '(/private/comment "kept")'))
        ok(client._simple_command("SETMETADATA", '""', '(/shared/comment "server note")'))
        client.logout()
        proc.stop()
        proc.start()
        client = login(proc)
        typ, data = client._simple_command("GETMETADATA", "INBOX", "/private/comment")
        assert typ == "OK"
        assert client.untagged_responses.pop("METADATA") == [b'"INBOX" (/private/comment "kept")']
        client._simple_command("GETMETADATA", '""', "/shared/comment")
        assert client.untagged_responses.pop("METADATA") == [b'"" (/shared/comment "server note")']
        client.logout()
    finally:
        proc.stop()
