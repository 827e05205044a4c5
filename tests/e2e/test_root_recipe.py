"""README's production recipe, run literally: root binds ports 25/587/465/143/993/110/995, twistd
drops to a system user, and mail then flows in and can be read.

It needs root, so it runs in a network namespace of its own (``unshare -n``): the real port
numbers are free there and nothing leaves it (and in a mount namespace, where the test may make
the Python installation readable to the system user). The system user is created for the test and
removed after. Skipped where any of that is not possible.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.support.server import BIN

TOOLS = ("unshare", "ip", "mount", "adduser", "deluser", "runuser", "chown")

# README.rst, "What listens where", without [tls]: no Let's Encrypt certificate here, so the
# self-signed one `init` makes stands in for it.
CONFIG = """\
[server]
hostname = "mx.example.org"

[listen]
smtp = "tcp:25"
submission = "tcp:587"
submissions = "tcp:465"
imap = "tcp:143"
imaps = "tcp:993"
pop3 = "tcp:110"
pop3s = "tcp:995"
web = "tcp:443"
web_redirect = "tcp:80"
"""

# Runs inside the namespace as root: the recipe, then a message in over SMTP and out over IMAP
# and POP3 as the user would read it.
INSIDE = textwrap.dedent(
    """\
    import imaplib, os, poplib, signal, smtplib, socket, ssl, subprocess, sys, time
    bin_dir, data, user, base, with_init = sys.argv[1:]
    txmailhost, twistd = os.path.join(bin_dir, "txmailhost"), os.path.join(bin_dir, "twistd")
    pidfile, logfile = os.path.join(base, "txmailhost.pid"), os.path.join(base, "txmailhost.log")

    def run(*argv, stdin=None):
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        if done.returncode:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def wait_for_port(port, deadline):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"nothing listens on port {port}")
                time.sleep(0.1)

    def stop():
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass

    def start():
        run(twistd, f"--uid={user}", f"--gid={user}", f"--pidfile={pidfile}",
            f"--logfile={logfile}", "txmailhost", "--data", data)

    def expose(paths):
        # Test rig, not recipe: an interpreter installed under root's 0700 home (pyenv), or a
        # checkout cloned into a 0700 temporary directory, is unreadable once root is gone.
        # Put a 0755 tmpfs over each closed directory, with what is needed from it bound back
        # into it, as a packaged Python in /usr and an installed txmailhost would be readable.
        needed = {}  # closed directory -> the entries of it that the paths go through
        for path in paths:
            current = "/"
            for part in path.strip("/").split("/"):
                current = os.path.join(current, part)
                if current == path:
                    break
                if not os.stat(current).st_mode & 0o001:
                    inner = os.path.relpath(path, current).split("/")[0]
                    needed.setdefault(current, set()).add(inner)
                    break
        for number, (closed, entries) in enumerate(sorted(needed.items())):
            hidden = os.path.join(base, f"hidden-{number}")
            os.mkdir(hidden)
            run("mount", "--bind", closed, hidden)
            run("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", closed)
            for inner in entries:
                os.mkdir(os.path.join(closed, inner))
                run("mount", "--bind", os.path.join(hidden, inner), os.path.join(closed, inner))

    import txmailhost as package  # the checkout an editable install runs from
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(package.__file__)))
    expose({
        sys.base_prefix,
        os.path.realpath(bin_dir),
        os.path.join(checkout, "txmailhost"),
        os.path.join(checkout, "twisted"),  # the twistd plugin
    })
    run("ip", "link", "set", "lo", "up")
    if with_init == "init":
        run(txmailhost, "--data", data, "init")
        run("chown", "-R", f"{user}:", data)
    start()
    try:
        deadline = time.time() + 30
        for port in (25, 587, 465, 143, 993, 110, 995):
            wait_for_port(port, deadline)
        admin = ("runuser", "-u", user, "--", txmailhost, "--data", data)
        run(*admin, "domain", "add", "example.org")
        run(*admin, "user", "add", "alice@example.org", "--password-file", "-",
            stdin="recipe-pw-1\\n")
        with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
            smtp.sendmail("carol@remote.test", ["alice@example.org"],
                          "Subject: recipe check\\r\\n\\r\\ndelivered as root dropped\\r\\n")
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        deadline = time.time() + 30
        while True:
            imap = imaplib.IMAP4("127.0.0.1", 143, timeout=30)
            imap.starttls(tls)
            imap.login("alice@example.org", "recipe-pw-1")
            imap.select("INBOX")
            found = imap.search(None, "SUBJECT", '"recipe check"')[1][0].split()
            if found or time.time() > deadline:
                break
            imap.logout()
            time.sleep(0.2)
        if not found:
            sys.exit("the message never reached the INBOX")
        body = imap.fetch(found[0], "(BODY[TEXT])")[1][0][1]
        imap.logout()
        if b"delivered as root dropped" not in body:
            sys.exit(f"IMAP served {body!r}")
        pop = poplib.POP3("127.0.0.1", 110, timeout=30)
        pop.stls(tls)
        pop.user("alice@example.org")
        pop.pass_("recipe-pw-1")
        if pop.stat()[0] != 1:
            sys.exit(f"POP3 sees {pop.stat()[0]} messages")
        pop.quit()
    finally:
        stop()
    # A restart (a reboot, an upgrade): the server prepares itself as root again, on a data
    # directory that now holds mail, an index and a queue.
    start()
    try:
        wait_for_port(25, time.time() + 30)
    finally:
        stop()
    """
)


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("the recipe starts as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    if subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n -m is not permitted here")


@pytest.mark.parametrize("with_init", ["init", "first-start"])
def test_readme_root_recipe_binds_as_root_then_serves_mail_as_the_system_user(
    with_init: str,
) -> None:
    """``first-start``: no ``init``; what the server creates before the drop is the user's."""
    _skip_unless_possible()
    user = f"txmh{secrets.token_hex(4)}"
    # The user's home must be reachable once root is gone: not under pytest's 0700 tmp_path.
    base = Path(tempfile.mkdtemp(prefix="txmailhost-recipe-", dir="/var/tmp"))
    base.chmod(0o755)
    data = base / "txmailhost"
    try:
        subprocess.run(
            ["adduser", "--system", "--group", "--home", str(data), user],
            check=True,
            capture_output=True,
        )
        (data / "txmailhost.toml").write_text(CONFIG)
        script = base / "inside.py"
        script.write_text(INSIDE)
        result = subprocess.run(
            [
                *("unshare", "-n", "-m", sys.executable, str(script)),
                *(BIN, str(data), user, str(base), with_init),
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = (base / "txmailhost.log").read_text() if (base / "txmailhost.log").exists() else ""
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\n--- log:\n{log}"
        for trouble in ("Traceback", "#critical]", "#error]", "Permission denied"):
            assert trouble not in log, log
        # Everything the server (or init, before the chown) left in the data directory is the
        # system user's: a file of root's there would be unwritable after the next drop.
        uid = pwd.getpwnam(user).pw_uid
        foreign = [
            os.path.join(top, name)
            for top, dirs, files in os.walk(data)
            for name in dirs + files
            if os.lstat(os.path.join(top, name)).st_uid != uid
        ]
        if with_init != "init":  # the test wrote the config as root; the admin may too
            foreign.remove(str(data / "txmailhost.toml"))
        assert not foreign, foreign
    finally:
        subprocess.run(["deluser", "--system", "--group", user], capture_output=True)
        subprocess.run(["deluser", "--system", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
