"""Still more real clients from Debian against the real server, each checked from the other
side (imaplib, poplib): mpop (POP3 over STLS and implicit TLS, UIDL keep, delete, USER and
SASL PLAIN), GNU Mailutils (``movemail`` from pop://, pops://, imap:// and imaps:// URLs;
``mail`` reading an imap:// mailbox and sending through smtp:// and smtps://), curl as an
SMTP client (STARTTLS on 587, implicit TLS on 465, AUTH) and as an IMAP client (APPEND,
EXAMINE, SEARCH, UID FETCH), s-nail (SMTP with STARTTLS and AUTH; an IMAP folder: read, flag,
copy into a folder it must create on ``[TRYCREATE]``, move) and mutt's batch sending through
``smtp_url``. The clients that can check a certificate are pointed at the server's own (it
names ``localhost``). Skipped where a client isn't installed (``.ci/run`` installs them)."""

from __future__ import annotations

import mailbox
import os
import poplib
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, client_context
from tests.e2e.test_client_interop import (
    ALICE,
    H,
    _cert,
    _imap,
    _messages,
    _send,
    _subjects,
    flags_by_subject,
)

pytestmark = pytest.mark.interop

BOB = "bob@example.test"
# The certificate the server made on its first start names mx.example.test and localhost:
# clients that check names connect to "localhost" (the server listens on 127.0.0.1 only).
LOCALHOST = "localhost"
ALICE_URL = ALICE.replace("@", "%40")  # the user part of a URL


def needs(program: str) -> pytest.MarkDecorator:
    """Skip where ``program`` is missing, before a server is started for nothing."""
    return pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} is not installed")


def _pop3_count(server) -> int:
    """How many messages alice's maildrop holds, as poplib sees it."""
    client = poplib.POP3(H, server.ports["pop3"], timeout=10)
    try:
        client.stls(client_context())
        client.user(ALICE)
        client.pass_(PASSWORD)
        return client.stat()[0]
    finally:
        client.quit()


def _mbox_subjects(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(message["Subject"]) for message in mailbox.mbox(str(path)))


def _flags(server, mailbox_name: str) -> dict[str, str]:
    client = _imap(server)
    try:
        client.select(mailbox_name, readonly=True)
        return flags_by_subject(client)
    finally:
        client.logout()


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 30)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


# --- mpop -----------------------------------------------------------------------------------


def _mpop(server, tmp_path: Path, account: str, *options: str) -> subprocess.CompletedProcess:
    rc = tmp_path / "mpoprc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            defaults
            tls on
            tls_trust_file {_cert(server)}
            user {ALICE}
            password {PASSWORD}
            delivery mbox {tmp_path / "mbox"}
            uidls_file {tmp_path / "uidls"}
            account stls
            host {LOCALHOST}
            port {server.ports["pop3"]}
            tls_starttls on
            account implicit
            host {LOCALHOST}
            port {server.ports["pop3s"]}
            tls_starttls off
            """
        )
    )
    rc.chmod(0o600)
    (tmp_path / "mbox").touch()
    return _run(
        ["mpop", "-C", str(rc), *options, account], env=dict(os.environ, HOME=str(tmp_path))
    )


@needs("mpop")
def test_mpop_keeps_mail_over_stls_and_fetches_only_new_mail_by_uidl(server, tmp_path):
    _send(server, "first")
    result = _mpop(server, tmp_path, "stls", "--keep=on", "--auth=plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mbox_subjects(tmp_path / "mbox") == ["first"]
    _send(server, "second")
    result = _mpop(server, tmp_path, "stls", "--keep=on", "--auth=plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mbox_subjects(tmp_path / "mbox") == ["first", "second"]  # not "first" twice
    result = _mpop(server, tmp_path, "stls", "--keep=on", "--auth=plain")
    assert result.returncode == 0 and "new: no messages" in result.stdout, result.stdout
    assert _pop3_count(server) == 2
    body = (tmp_path / "mbox").read_text()
    assert "\n.leading dot\n" in body  # dot-stuffing undone


@needs("mpop")
def test_mpop_deletes_over_implicit_tls_with_user_and_pass(server, tmp_path):
    for subject in ("one", "two", "three"):
        _send(server, subject)
    result = _mpop(server, tmp_path, "implicit", "--keep=off", "--auth=user")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mbox_subjects(tmp_path / "mbox") == ["one", "three", "two"]
    assert _pop3_count(server) == 0
    result = _mpop(server, tmp_path, "implicit", "--keep=off", "--auth=user")
    assert result.returncode == 0 and "no messages" in result.stdout, result.stdout


# --- GNU Mailutils --------------------------------------------------------------------------


def _movemail(tmp_path: Path, source: str, target: Path, *options: str):
    return _run(
        ["movemail", *options, source, str(target)], env=dict(os.environ, HOME=str(tmp_path))
    )


@needs("movemail")
def test_movemail_keeps_by_uidl_over_pop3_then_moves_over_pop3s(server, tmp_path):
    _send(server, "first")
    pop = f"pop://{ALICE_URL}:{PASSWORD}@{H}:{server.ports['pop3']}"
    kept = tmp_path / "kept.mbox"
    result = _movemail(tmp_path, pop, kept, "--preserve", "--uidl")
    assert result.returncode == 0, result.stderr
    _send(server, "second")
    result = _movemail(tmp_path, pop, kept, "--preserve", "--uidl")
    assert result.returncode == 0, result.stderr
    assert _mbox_subjects(kept) == ["first", "second"]  # UIDL: "first" is not copied again
    assert _pop3_count(server) == 2

    moved = tmp_path / "moved.mbox"
    pops = f"pops://{ALICE_URL}:{PASSWORD}@{H}:{server.ports['pop3s']}"
    result = _movemail(tmp_path, pops, moved)
    assert result.returncode == 0, result.stderr
    assert _mbox_subjects(moved) == ["first", "second"]
    assert _pop3_count(server) == 0
    assert "\n.leading dot\n" in moved.read_text()


@needs("movemail")
def test_movemail_moves_over_imap_and_imaps(server, tmp_path):
    _send(server, "one")
    _send(server, "two")
    copied = tmp_path / "copied.mbox"
    imap = f"imap://{ALICE_URL}:{PASSWORD}@{H}:{server.ports['imap']}/INBOX"
    result = _movemail(tmp_path, imap, copied, "--preserve")
    assert result.returncode == 0, result.stderr
    assert _mbox_subjects(copied) == ["one", "two"]
    assert _subjects(server) == ["one", "two"]
    moved = tmp_path / "moved.mbox"
    imaps = f"imaps://{ALICE_URL}:{PASSWORD}@{H}:{server.ports['imaps']}/INBOX"
    result = _movemail(tmp_path, imaps, moved)
    assert result.returncode == 0, result.stderr
    assert _mbox_subjects(moved) == ["one", "two"]
    assert _subjects(server) == []  # flagged \Deleted and expunged


@needs("mail")
def test_mailutils_mail_reads_and_deletes_in_an_imap_mailbox(server, tmp_path):
    if "GNU Mailutils" not in _run(["mail", "--version"]).stdout:
        pytest.skip("mail is not GNU Mailutils' mail")
    _send(server, "keep me")
    _send(server, "delete me")
    url = f"imap://{ALICE_URL}:{PASSWORD}@{H}:{server.ports['imap']}/INBOX"
    result = _run(
        ["mail", "-n", "-N", "-f", url],
        input="headers\nprint 1\ndelete 2\nquit\n",
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert "keep me" in result.stdout and "delete me" in result.stdout  # the headers listing
    assert "\n.leading dot\n" in result.stdout  # message 1 printed whole
    client = _imap(server)
    try:
        client.select("INBOX", readonly=True)
        flags = flags_by_subject(client)
    finally:
        client.logout()
    assert list(flags) == ["keep me"] and "\\Seen" in flags["keep me"]


@needs("mail")
def test_mailutils_mail_submits_over_starttls_and_implicit_tls_with_auth(server, tmp_path):
    """Mailutils' SMTP mailer takes STARTTLS when offered and picks AUTH LOGIN."""
    if "GNU Mailutils" not in _run(["mail", "--version"]).stdout:
        pytest.skip("mail is not GNU Mailutils' mail")
    for label, scheme in (("submission", "smtp"), ("submissions", "smtps")):
        mailer = f"{scheme}://{ALICE_URL}:{PASSWORD}@{H}:{server.ports[label]}"
        result = _run(
            ["mail", "-E", f'set sendmail="{mailer}"', "-r", ALICE, "-s", f"mailutils {label}",
             ALICE],
            input="hi from mailutils\n.dot\n",
            env=dict(os.environ, HOME=str(tmp_path)),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(_subjects(server)) == ["mailutils submission", "mailutils submissions"]
    assert "via LOGIN" in server.log()  # the mechanism it chose


# --- curl: SMTP and IMAP --------------------------------------------------------------------


def _curl(server, url: str, *options: str, user: str = ALICE) -> subprocess.CompletedProcess:
    return _run(
        ["curl", "-sS", "--cacert", _cert(server), "--user", f"{user}:{PASSWORD}", *options, url]
    )


@needs("curl")
def test_curl_submits_over_starttls_and_implicit_tls_with_auth(server, tmp_path):
    for label, scheme, tls in (
        ("submission", "smtp", ["--ssl-reqd"]),
        ("submissions", "smtps", []),
    ):
        message = tmp_path / f"{label}.eml"
        message.write_bytes(
            f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: curl {label}\r\n\r\nhi\r\n.dot\r\n".encode()
        )
        result = _curl(
            server,
            f"{scheme}://{LOCALHOST}:{server.ports[label]}",
            *tls,
            "--mail-from",
            BOB,
            "--mail-rcpt",
            ALICE,
            "--upload-file",
            str(message),
            user=BOB,
        )
        assert result.returncode == 0, result.stderr
    assert sorted(_subjects(server)) == ["curl submission", "curl submissions"]
    client = _imap(server)
    try:
        client.select("INBOX", readonly=True)
        _typ, data = client.fetch("1", "(BODY.PEEK[TEXT])")
    finally:
        client.logout()
    assert data[0][1] == b"hi\r\n.dot\r\n"  # curl stuffs the dot, the server unstuffs it


@needs("curl")
def test_curl_without_auth_cannot_submit(server, tmp_path):
    message = tmp_path / "m.eml"
    message.write_bytes(f"From: {BOB}\r\nSubject: no auth\r\n\r\nhi\r\n".encode())
    result = _run(
        ["curl", "-sS", "--cacert", _cert(server), "--ssl-reqd",
         f"smtp://{LOCALHOST}:{server.ports['submission']}",
         "--mail-from", BOB, "--mail-rcpt", ALICE, "--upload-file", str(message)]
    )  # fmt: skip
    assert result.returncode != 0 and "530" in result.stderr, result.stderr
    assert _subjects(server) == []


@needs("curl")
def test_curl_appends_examines_searches_and_fetches_by_uid(server, tmp_path):
    _send(server, "from smtp")
    base = f"imap://{LOCALHOST}:{server.ports['imap']}"
    draft = tmp_path / "draft.eml"
    draft.write_bytes(f"From: {ALICE}\r\nSubject: appended\r\n\r\nby curl\r\n".encode())
    result = _curl(server, f"{base}/Drafts", "--ssl-reqd", "--upload-file", str(draft))
    assert result.returncode == 0, result.stderr
    assert _subjects(server, "Drafts") == ["appended"]

    examined = _curl(server, f"{base}/INBOX", "--ssl-reqd", "-X", "EXAMINE INBOX")
    assert examined.returncode == 0, examined.stderr
    assert "* 1 EXISTS" in examined.stdout and "UIDVALIDITY" in examined.stdout
    found = _curl(server, f"{base}/INBOX", "--ssl-reqd", "-X", "UID SEARCH SUBJECT smtp")
    assert found.returncode == 0, found.stderr
    [uid] = found.stdout.split()[2:]
    fetched = _curl(server, f"{base}/INBOX;UID={uid}", "--ssl-reqd")
    assert fetched.returncode == 0, fetched.stderr
    assert "Subject: from smtp" in fetched.stdout and fetched.stdout.endswith("\n.leading dot\n")
    flags = _curl(server, f"{base}/INBOX", "--ssl-reqd", "-X", f"UID FETCH {uid} (FLAGS)")
    assert f"UID {uid} FLAGS (\\Seen)" in flags.stdout, flags.stdout  # the fetch set \Seen
    # implicit TLS, and a SEARCH given in the URL
    imaps = f"imaps://{LOCALHOST}:{server.ports['imaps']}/Drafts?SUBJECT%20appended"
    searched = _curl(server, imaps)
    assert searched.returncode == 0 and searched.stdout.strip() == "* SEARCH 1", searched


# --- s-nail ---------------------------------------------------------------------------------


def _snail(server, tmp_path: Path, *argv: str, commands: str = "") -> subprocess.CompletedProcess:
    rc = tmp_path / "nailrc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            set v15-compat
            set tls-ca-file={_cert(server)}
            set tls-ca-no-defaults
            set mta=smtp://{ALICE_URL}:{PASSWORD}@{LOCALHOST}:{server.ports["submission"]}
            set smtp-use-starttls
            set from={ALICE}
            set sendwait
            set imap-use-starttls
            set password={PASSWORD}
            set folder=imap://{ALICE_URL}@{LOCALHOST}:{server.ports["imap"]}
            set DEAD={tmp_path / "dead.letter"}
            """
        )
    )
    return _run(
        ["s-nail", "-:/", "-X", f"source {rc}", *argv],
        input=commands,
        env=dict(os.environ, HOME=str(tmp_path)),
    )


@needs("s-nail")
def test_snail_submits_with_starttls_and_auth(server, tmp_path):
    result = _snail(server, tmp_path, "-s", "from s-nail", BOB, commands="hello\n.dot\n")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "dead.letter").exists(), result.stderr
    message = _messages(server, BOB)[0]
    assert b"Subject: from s-nail\r\n" in message
    assert message.endswith(b"\r\nhello\r\n.dot\r\n")


@needs("s-nail")
def test_snail_reads_flags_copies_and_moves_in_an_imap_folder(server, tmp_path):
    for subject in ("read", "flag", "copy", "move"):
        _send(server, subject)
    commands = "headers\nprint 1\nflag 2\ncopy 3 +Filed\nmove 4 +Filed\nquit\n"
    result = _snail(server, tmp_path, "-#", "-f", "+INBOX", commands=commands)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Subject: read" in result.stdout and "\n.leading dot\n" in result.stdout
    assert "[New file]" in result.stdout, result.stdout  # COPY, [TRYCREATE], CREATE, COPY
    flags = _flags(server, "INBOX")
    assert sorted(flags) == ["copy", "flag", "read"]  # "move" expunged on quit
    assert "\\Seen" in flags["read"] and "\\Flagged" in flags["flag"]
    assert "\\Seen" not in flags["flag"]
    assert sorted(_subjects(server, "Filed")) == ["copy", "move"]


# --- mutt: batch sending --------------------------------------------------------------------


@needs("mutt")
def test_mutt_sends_through_smtp_url_with_starttls_and_implicit_tls(server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    for label, scheme in (("submission", "smtp"), ("submissions", "smtps")):
        rc = tmp_path / f"muttrc-{label}"
        rc.write_text(
            f'set ssl_ca_certificates_file = "{_cert(server)}"\n'
            "set ssl_force_tls = yes\nset ssl_starttls = yes\n"
            f'set from = "{ALICE}"\nset record = ""\n'
            f'set smtp_url = "{scheme}://{ALICE_URL}@{LOCALHOST}:{server.ports[label]}/"\n'
            f'set smtp_pass = "{PASSWORD}"\n'
        )
        result = _run(
            ["mutt", "-n", "-F", str(rc), "-s", f"mutt {label}", ALICE],
            input="hi from mutt\n.dot\n",
            env=dict(os.environ, HOME=str(home)),
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(_subjects(server)) == ["mutt submission", "mutt submissions"]
