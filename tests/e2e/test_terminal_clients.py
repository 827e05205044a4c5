"""The terminal mail readers from Debian against the real server, driven through tmux as a
person would: NeoMutt (its IMAP code, header cache, CONDSTORE/QRESYNC on the second opening,
IDLE), Alpine (the UW c-client library: server-side SORT and THREAD, filing, expunge), classic
Mutt (IMAP with its header cache, then POP3) and aerc (go-imap and go-smtp: IDLE, MOVE, sending
with a copy to Sent). Each reads, flags, files a message into a folder it creates, and quits;
the server's folders are then checked over IMAP. Skipped where tmux or the reader isn't
installed (``.ci/run`` installs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD
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


def _needs(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")


class Screen:
    """A program in a detached tmux session of its own (its own server socket), 200x50."""

    def __init__(self, tmp_path: Path, command: str, env: dict[str, str]) -> None:
        self.socket = f"txm-{uuid.uuid4().hex[:12]}"
        script = tmp_path / f"{self.socket}.sh"
        exports = "".join(f"export {name}='{value}'\n" for name, value in env.items())
        # the shell stays after the program ends, so its exit status can be read off the screen
        script.write_text(f"{exports}export TERM=xterm\n{command}\necho EXIT=$?\nsleep 600\n")
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-x", "200", "-y", "50",
             f"sh {script}"],
            check=True,
            timeout=10,
        )  # fmt: skip

    def text(self) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "capture-pane", "-p"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def wait_until(self, shows: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text()
            if shows(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"never shown as expected; the screen:\n{shown}")
            time.sleep(0.2)

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        return self.wait_until(lambda shown: needle in shown, timeout)

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run(["tmux", "-L", self.socket, "send-keys", key], check=True, timeout=10)
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], timeout=10, check=False)


@pytest.fixture
def screens():
    opened: list[Screen] = []
    yield opened
    for screen in opened:
        screen.close()


def _flags(server, mailbox: str = "INBOX") -> dict[str, str]:
    """Each message's FETCH line (its flags) by subject."""
    client = _imap(server)
    try:
        client.select(mailbox, readonly=True)
        return flags_by_subject(client)
    finally:
        client.logout()


def _neomutt(tmp_path: Path, server, screens: list[Screen]) -> Screen:
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user = "{ALICE}"\n'
        f'set imap_pass = "{PASSWORD}"\n'
        f'set folder = "imap://{H}:{server.ports["imap"]}/"\n'
        'set spoolfile = "+INBOX"\n'
        "set ssl_starttls = no\nset ssl_force_tls = no\n"
        "set imap_qresync = yes\nset imap_condstore = yes\nset imap_idle = yes\n"
        f'set header_cache = "{tmp_path / "hcache"}"\n'
        f'set message_cachedir = "{tmp_path / "bodies"}"\n'
        "set sort = date-received\nset confirmcreate = no\nset confirmappend = no\nset delete = yes\n"
        "set mail_check = 2\nset timeout = 1\n"
    )
    (tmp_path / "hcache").mkdir(exist_ok=True)
    (tmp_path / "bodies").mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    debug = tmp_path / "neomutt.log"
    screen = Screen(
        tmp_path, f"neomutt -n -F {rc} -d 2 -l {debug}", {"HOME": str(home)}
    )  # fmt: skip
    screens.append(screen)
    return screen


def _read_flag_and_file(screen: Screen, server) -> None:
    """What neomutt and mutt are both driven through (their keys are the same) on an INBOX
    of "first", "second" and "third": read the first, flag the second, file the third in a
    folder the save makes, quit; then the server's side is checked."""
    screen.wait_for("Msgs:3")
    screen.keys("Enter")  # read the first
    screen.wait_for("Subject: first")
    screen.keys("q")
    screen.wait_for("Msgs:3")
    screen.keys("j", "F")  # flag the second
    screen.wait_for("Flag:1")
    screen.keys("j", "s", "C-u", "=Archive", "Enter")  # file the third in a new folder
    screen.wait_for("Del:1")
    screen.keys("q")  # quit: the filed message is purged from INBOX
    screen.wait_for("EXIT=0")
    flags = _flags(server)
    assert sorted(flags) == ["first", "second"]
    assert "\\Seen" in flags["first"] and "\\Flagged" in flags["second"]
    assert _subjects(server, "Archive") == ["third"]


def test_neomutt_reads_flags_files_and_resynchronises(server, tmp_path, screens):
    _needs("tmux", "neomutt")
    for subject in ("first", "second", "third"):
        _send(server, subject)
    screen = _neomutt(tmp_path, server, screens)
    _read_flag_and_file(screen, server)

    # Again, with its header cache: CONDSTORE/QRESYNC resynchronisation, then IDLE
    for path in tmp_path.glob("neomutt.log*"):
        path.unlink()
    screen = _neomutt(tmp_path, server, screens)
    screen.wait_for("Msgs:2")
    _send(server, "fourth")
    screen.wait_for("Msgs:3")
    screen.keys("q")
    screen.wait_for("EXIT=0")
    log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("neomutt.log*"))
    assert "ENABLE QRESYNC" in log and "CHANGEDSINCE" in log, log[-3000:]
    assert " BAD " not in log, log[-3000:]


def test_alpine_sorts_threads_files_and_expunges_through_c_client(server, tmp_path, screens):
    _needs("tmux", "alpine")
    for subject in ("beta", "alpha", "Re: alpha", "gamma"):
        _send(server, subject)
    imap = f"{{{H}:{server.ports['imap']}/user={ALICE}/notls}}"
    rc = tmp_path / "pinerc"
    rc.write_text(
        f"personal-name=Alice\nuser-domain=example.test\ninbox-path={imap}INBOX\n"
        f"folder-collections=Mail {imap}[]\n"
        "feature-list=quit-without-confirm,expunge-without-confirm\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    screen = Screen(tmp_path, f"alpine -p {rc} -d 0 -i", {"HOME": str(home)})
    screens.append(screen)
    screen.wait_for("Exit this greeting")
    screen.keys("E")
    screen.wait_for("ENTER PASSWORD")
    screen.keys(PASSWORD, "Enter")
    screen.wait_for("Preserve password", timeout=15)
    screen.keys("N")
    screen.wait_for("opened with 4 messages")
    screen.keys("$", "S")  # by subject: c-client asks the server's SORT

    def by_subject(shown: str) -> bool:
        order = [shown.find(f") {s}") for s in ("alpha", "Re: alpha", "beta", "gamma")]
        return min(order) >= 0 and order == sorted(order)

    screen.wait_until(by_subject)
    screen.keys("$", "H")  # by thread: the server's THREAD
    screen.wait_for("\\-Re: alpha")  # the reply under its original
    screen.keys("S", "C-u", "Archive", "Enter")  # the selected message filed
    screen.wait_for("Create?")  # the folder made over IMAP, then the message copied in
    screen.keys("Y")
    screen.wait_for("of 4 DEL")  # saved, so marked deleted (the status line may be gone)
    screen.keys("x")
    screen.wait_for(" of 3 ")  # expunged: "Message n of 3"
    screen.keys("q")
    screen.wait_for("EXIT=0")
    assert len(_subjects(server)) == 3
    assert len(_subjects(server, "Archive")) == 1


def _mutt(tmp_path: Path, server, screens: list[Screen], extra: str = "") -> Screen:
    """Classic Mutt on INBOX over IMAP with STARTTLS required, checking the server's own
    certificate (it names localhost), with a header cache and a body cache."""
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user = "{ALICE}"\n'
        f'set imap_pass = "{PASSWORD}"\n'
        f'set folder = "imap://localhost:{server.ports["imap"]}/"\n'
        'set spoolfile = "+INBOX"\n'
        f'set ssl_ca_certificates_file = "{_cert(server)}"\n'
        "set ssl_starttls = yes\nset ssl_force_tls = yes\n"
        "set imap_qresync = yes\nset imap_condstore = yes\nset imap_idle = yes\n"
        f'set header_cache = "{tmp_path / "hcache"}"\n'
        f'set message_cachedir = "{tmp_path / "bodies"}"\n'
        "set sort = date-received\nset confirmcreate = no\nset confirmappend = no\nset delete = yes\n"
        "set mail_check = 2\nset timeout = 1\nset move = no\n" + extra
    )
    (tmp_path / "hcache").mkdir(exist_ok=True)
    (tmp_path / "bodies").mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    screen = Screen(tmp_path, f"mutt -n -F {rc} -d 2", {"HOME": str(home)})
    screens.append(screen)
    return screen


def test_mutt_reads_flags_files_and_resynchronises_with_its_header_cache(server, tmp_path, screens):
    _needs("tmux", "mutt")
    for subject in ("first", "second", "third"):
        _send(server, subject)
    screen = _mutt(tmp_path, server, screens)
    _read_flag_and_file(screen, server)

    # Again, from its header cache: what changed on the server meanwhile is picked up
    client = _imap(server)
    try:
        client.select("INBOX")
        client.store("1", "-FLAGS", "\\Seen")  # "first" unread again, elsewhere
    finally:
        client.logout()
    for path in (tmp_path / "home").glob(".muttdebug*"):
        path.unlink()
    screen = _mutt(tmp_path, server, screens)
    screen.wait_for("Msgs:2")
    screen.wait_for("New:1")
    _send(server, "fourth")
    screen.wait_for("Msgs:3")
    screen.keys("q")
    screen.wait_for("EXIT=0")
    log = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").glob(".muttdebug*"))
    assert "CHANGEDSINCE" in log, log[-3000:]
    assert " BAD " not in log, log[-3000:]


def test_mutt_reads_and_deletes_over_pop3_with_stls(server, tmp_path, screens):
    _needs("tmux", "mutt")
    for subject in ("keep", "drop"):
        _send(server, subject)
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set pop_user = "{ALICE}"\nset pop_pass = "{PASSWORD}"\n'
        f'set ssl_ca_certificates_file = "{_cert(server)}"\n'
        "set ssl_starttls = yes\nset ssl_force_tls = yes\nset delete = yes\n"
        "set sort = date-received\n"
    )
    home = tmp_path / "home"
    (home / "Mail").mkdir(parents=True)  # else mutt asks to create it
    url = f"pop://localhost:{server.ports['pop3']}/"
    screen = Screen(tmp_path, f"mutt -n -F {rc} -f {url}", {"HOME": str(home)})
    screens.append(screen)
    screen.wait_for("Msgs:2")
    screen.keys("Enter")
    screen.wait_for("Subject: keep")
    screen.keys("q")
    screen.wait_for("Msgs:2")
    screen.keys("j", "d")
    screen.wait_for("Del:1")
    screen.keys("q")
    screen.wait_for("EXIT=0")
    assert _subjects(server) == ["keep"]


def test_aerc_reads_flags_moves_sends_and_sees_new_mail(server, tmp_path, screens):
    """aerc (go-imap, go-smtp): IMAP over STARTTLS, IDLE for new mail, MOVE into a folder it
    creates, and sending over submission with STARTTLS and AUTH, copied to Sent by APPEND.
    Go checks the server's certificate against the file SSL_CERT_FILE names."""
    _needs("tmux", "aerc")
    for subject in ("first", "second", "third"):
        _send(server, subject)
    config = tmp_path / "config" / "aerc"
    config.mkdir(parents=True)
    user = ALICE.replace("@", "%40")
    accounts = config / "accounts.conf"
    accounts.write_text(
        "[alice]\n"
        f"source = imap://{user}:{PASSWORD}@localhost:{server.ports['imap']}\n"
        f"outgoing = smtp://{user}:{PASSWORD}@localhost:{server.ports['submission']}\n"
        "smtp-starttls = yes\n"  # aerc 0.14 refuses an advertised STARTTLS without it
        f"from = Alice <{ALICE}>\ncopy-to = Sent\ndefault = INBOX\n"
    )
    accounts.chmod(0o600)
    (config / "aerc.conf").write_text("[general]\n[ui]\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SSL_CERT_FILE": _cert(server),
        "EDITOR": "true",  # the body comes from :compose; the editor only has to exit
    }
    screen = Screen(tmp_path, "aerc", env)
    screens.append(screen)
    screen.wait_until(lambda shown: all(s in shown for s in ("first", "second", "third")))
    screen.keys("Enter")  # open the selected message (this marks it \Seen)
    opened = re.search(r"Subject: (\w+)", screen.wait_for("Subject: ")).group(1)
    screen.keys("q", ":flag", "Enter")
    screen.keys("j", ":mv -p Filed", "Enter")  # the next one, into a folder it creates
    [filed] = _until(lambda: _subjects(server, "Filed"))
    assert filed != opened
    _send(server, "fourth")
    screen.wait_for("fourth")  # told by IDLE
    screen.keys(':compose -H "To: bob@example.test" -H "Subject: from aerc" hello-aerc', "Enter")
    screen.wait_for("Send this email?")
    screen.keys("y")
    # What aerc's status line says next is not always redrawn (aerc 0.14), so the server's
    # side is what is waited for: the message delivered, then its copy in Sent.
    [message] = _until(lambda: _messages(server, "bob@example.test"))
    assert b"Subject: from aerc\r\n" in message and b"hello-aerc" in message
    assert _until(lambda: _subjects(server, "Sent")) == ["from aerc"]
    screen.keys(":quit", "Enter")
    screen.wait_for("EXIT=0")
    flags = _flags(server)
    assert sorted(flags) == sorted({"first", "second", "third", "fourth"} - {filed})
    assert "\\Seen" in flags[opened] and "\\Flagged" in flags[opened]
    assert "\\Seen" in _flags(server, "Sent")["from aerc"]


def _until(look: Callable[[], list], timeout: float = 20) -> list:
    """What ``look`` returns once it is not empty (a change the server makes soon)."""
    deadline = time.monotonic() + timeout
    while not (found := look()):
        if time.monotonic() > deadline:
            raise AssertionError("the server never showed the change")
        time.sleep(0.2)
    return found
