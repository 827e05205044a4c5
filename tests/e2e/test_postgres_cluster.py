"""Three real nodes on one PostgreSQL database: the "many machines" claim, tested whole.

Three server processes (127.0.0.2, .3 and .4, each with its own data directory) share one
database for the mail store, the accounts and the relay queue. Nothing passes between them
but PostgreSQL: rows, row locks, and ``LISTEN/NOTIFY``. The tests:

- SMTP load spread over the three nodes, one node killed with SIGKILL in the middle of it:
  every message that got its ``250`` is in its mailbox exactly once (read over IMAP on a
  surviving node), and every acknowledged remote recipient reaches the sink server, the dead
  node's queue leases taken over by the living; the restarted node serves the same mailbox.
- IDLE on one node hears a delivery and a flag change made through another.
- APPENDs on all three nodes at once to one mailbox get unique UIDs, ascending per session.
- Dovecot's imaptest: a stress run per node at once on one user's INBOX reports no error,
  and the scripted files pass on a node of the cluster as they do on Maildir.
- Failed logins from one address, one on each node, add up to the limit on all of them.

Two more nodes (127.0.0.6 and .7, the ``pair`` fixture) check the state that used to live in
each node's data directory: a bounce to an SRS address one node wrote is accepted and routed
by the other; a Sieve script uploaded over ManageSieve to one node files mail the other
delivers; a vacation reply goes to a sender once, whichever nodes deliver their mail.

Skipped without PostgreSQL (tests/support/postgres.py); the imaptest test also without its
build dependencies (tests/e2e/test_imaptest.py).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import smtplib
import socket
import socketserver
import subprocess
import threading
import time
from collections import Counter

import pytest

from tests.e2e.test_imaptest import TOOL, _build_dir, _missing_build_deps
from tests.support.dns import DNSServer
from tests.support.postgres import postgres_server  # noqa: F401 - the session's cluster
from tests.support.server import LABELS, ServerProcess

pytestmark = pytest.mark.slow

PASSWORD = "cluster-Pw-7q2"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LOCAL_USERS = ("bob@example.test", "carol@example.test", "dave@example.test")
LEASE = 3.0  # [queue] lease_time: how long the dead node's claims outlive it


class Node(ServerProcess):
    """A server bound to its own loopback address and named after it (the sink tells
    which node delivered by the EHLO name)."""

    dsn = ""  # the database, for tests that read it directly

    def __init__(self, data_dir: str, host: str, extra_config: str) -> None:
        super().__init__(data_dir, extra_config)
        self.host = host
        self.name = f"node{host.rsplit('.', 1)[1]}.example.test"

    def write_config(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        listen = "\n".join(f'{label} = "tcp:0:interface={self.host}"' for label in LABELS)
        with open(os.path.join(self.data_dir, "txmailhost.toml"), "w") as f:
            f.write(f'[server]\nhostname = "{self.name}"\nworkers = 1\n\n[listen]\n{listen}\n\n')
            f.write("[mailauth]\ncheck_inbound = false\n\n" + self.extra_config)

    def imap(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.ports["imap"], timeout=30)
        client.login(user, PASSWORD)
        return client


class Sink(socketserver.ThreadingTCPServer):
    """The remote MX: an SMTP server that records each transaction (EHLO name, recipients,
    message, when the ``250`` went out) and accepts everything."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkSession)
        self.lock = threading.Lock()
        self.deliveries: list[tuple[str, tuple[str, ...], bytes, float]] = []
        self.hold: dict[str, float] = {}  # EHLO name -> seconds to wait before the 354
        self.pending: dict[int, tuple[str, tuple[str, ...]]] = {}  # transactions in DATA
        self.senders: list[tuple[str, tuple[str, ...]]] = []  # (MAIL FROM, recipients)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def before_250(self) -> None:
        """Called with the message received, before its ``250`` (a test's hook)."""


class _SinkSession(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):  # a client killed mid-session
            self._session()

    def _session(self) -> None:
        sink: Sink = self.server  # type: ignore[assignment]
        ehlo, rcpts, sender = "", [], ""
        self.wfile.write(b"220 sink.remote.test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                ehlo = line[5:].strip().decode()
                self.wfile.write(b"250-sink.remote.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                rcpts = []
                sender = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                self.wfile.write(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                self.wfile.write(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                with sink.lock:
                    sink.pending[id(self)] = (ehlo, tuple(rcpts))
                time.sleep(sink.hold.get(ehlo, 0))
                self.wfile.write(b"354 go on\r\n")
                lines = []
                while (part := self.rfile.readline()) != b".\r\n":
                    if not part:
                        return  # the client died mid-message: nothing delivered
                    lines.append(part)
                with sink.lock:
                    sink.deliveries.append((ehlo, tuple(rcpts), b"".join(lines), time.time()))
                    sink.senders.append((sender, tuple(rcpts)))
                    del sink.pending[id(self)]
                sink.before_250()
                self.wfile.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            else:
                self.wfile.write(b"250 2.0.0 ok\r\n")


@pytest.fixture(scope="module")
def sink():
    server = Sink()
    yield server
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def _nodes(
    tmp_path_factory, pg, sink, name: str, hosts, mx: str, queue: str, security: str,
    more: str = "",
):  # fmt: skip
    """Nodes on ``hosts`` sharing one fresh database of ``pg`` (store, accounts and queue in it), a DNS
    server giving ``mx`` the sink as its MX; stopped, and the database dropped, afterwards.
    ``queue`` and ``security`` are extra lines of those sections, ``more`` extra sections.
    Yields (nodes, dsn)."""
    dns = DNSServer().start()
    dns.add(mx, "MX", f"10 mx.{mx}.")
    dns.add(f"mx.{mx}", "A", "127.0.0.1")
    dsn = pg.database()
    extra = (
        f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n\n'
        f'[queue]\nbackend = "postgres"\n{queue}retry_min = 1\nretry_max = 2\n\n'
        f'[security]\nplaintext_auth_from = ["loopback"]\n{security}\n'
        f"{more}"
        f'[relay]\nnameservers = ["{dns.address}"]\ndns_timeout = 2\nport = {sink.port}\n'
    )
    root = tmp_path_factory.mktemp(name)
    nodes = [Node(str(root / f"node{i}"), host, extra) for i, host in enumerate(hosts)]
    try:
        for node in nodes:
            node.start()
        yield nodes, dsn
    finally:
        for node in nodes:
            node.stop()
        dns.stop()
        pg.drop(dsn)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server, sink):  # noqa: F811
    """Three nodes on one fresh database, accounts and queue in it too; users added once."""
    with _nodes(
        tmp_path_factory, postgres_server, sink, "cluster", HOSTS, "remote.test",
        queue=f"lease_time = {LEASE}\n", security="login_failures_per_ip = 3\n",
    ) as (nodes, _dsn):  # fmt: skip
        # Once, on the first node: the accounts are in the database, so every node has them.
        for user in ("alice@example.test", *LOCAL_USERS, "erin@example.test"):
            nodes[0].add_user(user, PASSWORD)
        for user in ("testuser1@example.test", "testuser2@example.test"):
            nodes[0].add_user(user, PASSWORD)
        yield nodes


def wait_for(check, timeout: float = 60.0, step: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := check():
            return found
        time.sleep(step)
    raise AssertionError("condition not reached in time")


_TOKEN = re.compile(rb"Subject: load (t\d+-\d+)")


def mailbox_tokens(node: Node, user: str) -> tuple[list[int], Counter]:
    """UIDs and the count of each load token in ``user``'s INBOX, as ``node`` serves it."""
    imap = node.imap(user)
    try:
        imap.select("INBOX", readonly=True)
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        parts = [p for p in data if isinstance(p, tuple)]
        uids = [int(re.search(rb"UID (\d+)", p[0])[1]) for p in parts]
        tokens = Counter(m[1].decode() for p in parts for m in _TOKEN.finditer(p[1]))
        return uids, tokens
    finally:
        imap.logout()


def _send(node: Node, token: str, n: int) -> tuple[list[str], bool]:
    """Send message ``n`` through ``node``: every fourth one submitted by alice to a remote
    recipient and a local one, the others inbound on port 25 to a local user. (recipients,
    True when the final ``250`` came back)."""
    local = LOCAL_USERS[n % len(LOCAL_USERS)]
    remote = n % 4 == 0
    rcpts = [f"r-{token}@remote.test", local] if remote else [local]
    sender = "alice@example.test" if remote else "someone@elsewhere.test"
    text = f"From: {sender}\r\nSubject: load {token}\r\n\r\nmessage {token}\r\n"
    try:
        port = node.ports["submission" if remote else "smtp"]
        with smtplib.SMTP(node.host, port, timeout=30) as s:
            if remote:
                s.login("alice@example.test", PASSWORD)
            s.sendmail(sender, rcpts, text)
        return rcpts, True
    except (OSError, smtplib.SMTPException):
        return rcpts, False


def test_kill_9_of_a_node_under_smtp_load_loses_and_doubles_nothing_acknowledged(
    cluster: list[Node], sink: Sink
):
    threads, per_thread, victim = 6, 50, cluster[2]
    acked: dict[str, list[str]] = {}
    unacked: dict[str, list[str]] = {}
    lock = threading.Lock()

    def sender(t: int) -> None:
        for i in range(per_thread):
            n = t * per_thread + i
            token = f"t{t}-{i}"
            rcpts, ok = _send(cluster[n % 3], token, n)
            with lock:
                (acked if ok else unacked)[token] = rcpts

    def victim_delivering() -> set[str]:
        with sink.lock:
            return {
                r for ehlo, rcpts in sink.pending.values() if ehlo == victim.name for r in rcpts
            }

    # The sink keeps the victim's deliveries waiting before DATA, so that when it dies it
    # holds leases on recipients it has not delivered.
    sink.hold[victim.name] = 1.5
    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    wait_for(lambda: len(acked) >= threads * per_thread // 3 and victim_delivering(), step=0.01)
    victim.kill()  # SIGKILL, mid-load: its sessions, commits and queue leases cut short
    killed_at = time.time()
    orphaned = victim_delivering()
    del sink.hold[victim.name]
    for w in workers:
        w.join(timeout=300)
    assert len(acked) + len(unacked) == threads * per_thread
    assert unacked, "the kill cut no session short: it did not land under load"
    survivor = cluster[0]

    # Every acknowledged message in its mailbox exactly once; the unacknowledged at most once.
    for user in LOCAL_USERS:
        uids, tokens = mailbox_tokens(survivor, user)
        mine = {t for t, r in acked.items() if user in r}
        assert {t: tokens[t] for t in mine if tokens[t] != 1} == {}, user
        assert all(tokens[t] <= 1 for t in unacked), user
        assert set(tokens) <= set(acked) | set(unacked)
        assert len(uids) == len(set(uids)) == sum(tokens.values())

    # Every acknowledged remote recipient reaches the sink, the dead node's leases retaken.
    remote = {r[0] for r in acked.values() if r[0].endswith("@remote.test")}
    assert remote

    def delivered() -> Counter:
        with sink.lock:
            return Counter(r for _, rcpts, _, _ in sink.deliveries for r in rcpts)

    wait_for(lambda: remote <= set(delivered()), timeout=120)
    wait_for(lambda: survivor.cli("queue", "list").stdout == "", timeout=60)
    time.sleep(LEASE + 2)  # a lease taken over twice would show as a late second copy
    counts = delivered()
    doubled = {r for r, c in counts.items() if c > 1}
    # RFC 5321 6.1's one accepted duplicate: the dead node got the sink's 250 and died before
    # recording it. Any other second copy is a lease handed out twice.
    with sink.lock:
        excused = {
            r
            for ehlo, rcpts, _, at in sink.deliveries
            for r in rcpts
            if ehlo == victim.name and at <= killed_at
        }
    assert doubled <= excused, (doubled, excused)
    with sink.lock:  # what the victim was delivering when it died, another node delivered
        retaken = {
            r for ehlo, rcpts, _, at in sink.deliveries for r in rcpts if ehlo != victim.name
        }
    assert orphaned and orphaned <= retaken, (orphaned, retaken)
    assert len(doubled) <= 2, doubled
    assert set(counts) <= {r[0] for r in (*acked.values(), *unacked.values())}

    # The killed node, restarted, serves the same mailboxes.
    victim.start()
    for user in LOCAL_USERS:
        assert mailbox_tokens(victim, user) == mailbox_tokens(survivor, user)


def _idle(imap: imaplib.IMAP4, tag: bytes) -> None:
    imap.send(tag + b" IDLE\r\n")
    assert imap.readline().startswith(b"+")


def test_idle_on_one_node_hears_a_delivery_and_a_flag_change_made_through_another(
    cluster: list[Node],
):
    a, b, c = cluster
    imap = a.imap("erin@example.test")
    typ, data = imap.select("INBOX")
    before = int(data[0])
    _idle(imap, b"i1")
    with smtplib.SMTP(c.host, c.ports["smtp"], timeout=30) as s:
        s.sendmail("x@elsewhere.test", ["erin@example.test"], "Subject: via C\r\n\r\nhi\r\n")
    sent = time.monotonic()
    assert imap.readline() == b"* %d EXISTS\r\n" % (before + 1)
    pushed = time.monotonic() - sent
    other = b.imap("erin@example.test")
    other.select("INBOX")
    typ, _ = other.store(str(before + 1), "+FLAGS", "(\\Flagged)")
    assert typ == "OK"
    line = imap.readline()
    while b"RECENT" in line:
        line = imap.readline()
    assert line.startswith(b"* %d FETCH" % (before + 1)) and b"\\Flagged" in line
    imap.send(b"DONE\r\n")
    while not imap.readline().startswith(b"i1 OK"):
        pass
    other.logout()
    imap.logout()
    assert pushed < 1.0, f"the push took {pushed:.2f}s"


def test_concurrent_appends_on_all_nodes_get_unique_ascending_uids(cluster: list[Node]):
    per_session, sessions = 15, 6
    got: dict[int, list[int]] = {}

    def appender(k: int) -> None:
        imap = cluster[k % 3].imap("erin@example.test")
        uids = []
        for i in range(per_session):
            typ, data = imap.append("INBOX", None, None, f"Subject: a{k}-{i}\r\n\r\nx\r\n".encode())
            assert typ == "OK"
            uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1]))
        imap.logout()
        got[k] = uids

    workers = [threading.Thread(target=appender, args=(k,)) for k in range(sessions)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert len(got) == sessions
    every = [uid for uids in got.values() for uid in uids]
    assert len(set(every)) == len(every) == per_session * sessions
    assert all(uids == sorted(uids) for uids in got.values())
    for node in cluster:  # every node lists them, in the same order
        imap = node.imap("erin@example.test")
        imap.select("INBOX", readonly=True)
        listed = [int(u) for u in imap.uid("SEARCH", None, "ALL")[1][0].split()]
        imap.logout()
        assert set(every) <= set(listed) and listed == sorted(listed)


STRESS_SECS = 20


@pytest.fixture(scope="module")
def imaptest() -> str:
    """imaptest, built as tests/e2e/test_imaptest.py builds it but into a directory of its
    own (unless ``IMAPTEST_BUILD`` names one): under ``pytest -n 2`` both modules may build at
    once on a clean machine, and build.sh replaces the tests directory the other may be
    reading."""
    missing = _missing_build_deps()
    if missing:
        pytest.skip(f"imaptest can't be built: {missing}")
    build = os.environ.get("IMAPTEST_BUILD") or _build_dir() + "-cluster"
    done = subprocess.run(
        [os.path.join(TOOL, "build.sh"), build], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"imaptest build failed:\n{done.stdout}\n{done.stderr}"
    return build


def test_imaptest_stress_on_three_nodes_at_once_and_its_scripted_files(
    cluster: list[Node],
    imaptest: str,
    tmp_path,
):
    """imaptest resolves one host= name to its addresses and spreads its clients over them,
    but one port= for all; without a name that resolves to 127.0.0.2-4 (no /etc/hosts change
    in a test), one imaptest per node runs at the same time on the same INBOX."""
    mbox = tmp_path / "stress.mbox"
    subprocess.run(["python3", os.path.join(TOOL, "gen_mbox.py"), str(mbox), "300"], check=True)
    runs = []
    for node in cluster:
        log = open(tmp_path / f"stress-{node.name}.log", "w")  # noqa: SIM115 - closed below
        args = [os.path.join(imaptest, "imaptest"), f"host={node.host}"]
        args += [f"port={node.ports['imap']}", "user=testuser1@example.test"]
        args += [f"pass={PASSWORD}", f"mbox={mbox}", f"secs={STRESS_SECS}", "clients=4"]
        runs.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in runs:
        proc.wait(timeout=STRESS_SECS + 90)
        log.close()
    for node in cluster:
        text = (tmp_path / f"stress-{node.name}.log").read_text(errors="replace")
        errors = [line for line in text.splitlines() if line.startswith(("Error:", "Panic:"))]
        assert "Totals:" in text, text[-2000:]
        assert errors == [], f"{node.name}: {len(errors)} errors, first: {errors[:5]}"

    env = dict(
        os.environ,
        IMAPTEST_BUILD=imaptest,
        USER2="testuser2@example.test",
        DIR_TIMEOUT="0",
        TEST_TIMEOUT="30",
        STRESS_SECS="0",
    )
    a = cluster[0]
    argv = [os.path.join(TOOL, "run.sh"), a.host, str(a.ports["imap"])]
    argv += ["testuser1@example.test", PASSWORD, str(tmp_path / "scripted")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    totals = re.search(r"^(\d+) passed, (\d+) failed$", done.stdout, re.M)
    assert totals, done.stdout + done.stderr
    # The Maildir store's result (tests/e2e/test_imaptest.py): 68 passed, 0 failed, 3 skipped.
    assert int(totals[1]) >= 68 and totals[2] == "0", done.stdout


class _FromElsewhere(imaplib.IMAP4):
    """An IMAP client connecting from 127.0.0.5: its failures count against that address,
    not against 127.0.0.1, which the other tests log in from."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=("127.0.0.5", 0)
        )


def _login_from_elsewhere(node: Node, password: str) -> str:
    imap = _FromElsewhere(node.host, node.ports["imap"], timeout=30)
    try:
        imap.login("erin@example.test", password)
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        imap.shutdown()
    return "OK"


def test_failed_logins_on_three_nodes_add_up_to_one_limit(cluster: list[Node]):
    """login_failures_per_ip = 3: one failure on each node, and no node has seen three of its
    own, yet every node refuses that address (its check of the right password included)."""
    assert _login_from_elsewhere(cluster[0], PASSWORD) == "OK"
    for node in cluster:
        assert "AUTHENTICATIONFAILED" in _login_from_elsewhere(node, "wrong-password")
    for node in cluster:
        refused = wait_for(
            lambda n=node: "UNAVAILABLE" in (r := _login_from_elsewhere(n, PASSWORD)) and r,
            timeout=15,
            step=0.5,
        )
        assert "UNAVAILABLE" in refused


# -- state that lived in each node's data directory --------------------------------------------
# Two nodes are enough to show that what one node keeps (SRS keys, Sieve scripts, vacation
# replies) is what the other uses; each test below fails with the per-node files.

PAIR_HOSTS = ("127.0.0.6", "127.0.0.7")
SRS_DOMAIN = "fwd.example.test"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_server, sink):  # noqa: F811
    """Two nodes on one fresh database (store, accounts, queue) with SRS on, a remote domain
    far.test whose MX is the sink, and the users of the tests below added once on node A."""
    with _nodes(
        tmp_path_factory, postgres_server, sink, "pair", PAIR_HOSTS, "far.test",
        queue="", security="", more=f'[srs]\ndomain = "{SRS_DOMAIN}"\n\n',
    ) as (nodes, dsn):  # fmt: skip
        for user in ("alice", "frank", "grace", "harry"):
            nodes[0].add_user(f"{user}@example.test", PASSWORD)
        nodes[0].cli("user", "forward", "alice@example.test", "bob@far.test", "--no-keep-copy")
        nodes[0].cli("dkim", "init", "example.test")  # once, on node A, for every node
        nodes[0].dsn = dsn
        yield nodes


def _smtp(node: Node, sender: str, recipient: str, message: str) -> None:
    with smtplib.SMTP(node.host, node.ports["smtp"], timeout=30) as s:
        s.sendmail(sender, [recipient], message.encode())


def _upload(node: Node, user: str, script: str) -> None:
    """PUTSCRIPT + SETACTIVE over ManageSieve (sievelib, PLAIN: loopback) on ``node``."""
    from sievelib.managesieve import Client

    client = Client(node.host, node.ports["managesieve"])
    assert client.connect(user, PASSWORD, authmech="PLAIN"), client.errmsg
    assert client.putscript("main", script), client.errmsg
    assert client.setactive("main"), client.errmsg
    client.logout()


def _subjects(node: Node, user: str, mailbox: str = "INBOX") -> list[str]:
    imap = node.imap(user)
    try:
        typ, _ = imap.select(mailbox, readonly=True)
        if typ != "OK":
            return []
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [
            p[1].decode().split(":", 1)[1].strip()
            for p in data
            if isinstance(p, tuple) and b":" in p[1]
        ]
    finally:
        imap.logout()


def test_a_bounce_to_an_srs_address_of_one_node_is_accepted_and_routed_by_another(
    pair: list[Node], sink: Sink
):
    a, b = pair
    _smtp(a, "carol@far.test", "alice@example.test",
          "From: carol@far.test\r\nSubject: forward me\r\n\r\nhi\r\n")  # fmt: skip

    def forwarded() -> str | None:
        with sink.lock:
            found = [f for f, rcpts in sink.senders if rcpts == ("bob@far.test",)]
        return found[0] if found else None

    srs_address = wait_for(forwarded, timeout=30)
    assert srs_address.startswith("SRS0=") and srs_address.endswith(f"=far.test=carol@{SRS_DOMAIN}")
    # The bounce comes back to the other node (any node behind the MX).
    with smtplib.SMTP(b.host, b.ports["smtp"], timeout=30) as s:
        s.ehlo("mx.far.test")
        s.mail("<>")
        forged = srs_address.replace("=far.test=", "=evil.test=")
        assert s.rcpt(forged)[0] == 550
        assert s.rcpt(srs_address)[0] == 250
        code, _ = s.data(b"From: MAILER-DAEMON@far.test\r\nSubject: srs bounce\r\n\r\nno\r\n")
        assert code == 250

    def bounced() -> bool:
        with sink.lock:
            return any(
                rcpts == ("carol@far.test",) and b"Subject: srs bounce" in body
                for _, rcpts, body, _ in sink.deliveries
            )

    assert wait_for(bounced, timeout=30)


@pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection")
def test_a_sieve_script_uploaded_to_one_node_files_mail_delivered_by_another(pair: list[Node]):
    a, b = pair
    _upload(a, "frank@example.test",
            'require ["fileinto", "mailbox"];\r\n'
            'if header :contains "subject" "[lists]" { fileinto :create "Lists"; }\r\n')  # fmt: skip
    _smtp(b, "carol@far.test", "frank@example.test",
          "From: carol@far.test\r\nTo: frank@example.test\r\nSubject: [lists] weekly\r\n\r\nx\r\n")  # fmt: skip
    _smtp(b, "carol@far.test", "frank@example.test",
          "From: carol@far.test\r\nTo: frank@example.test\r\nSubject: personal\r\n\r\nx\r\n")  # fmt: skip
    assert _subjects(a, "frank@example.test", "Lists") == ["[lists] weekly"]
    assert _subjects(b, "frank@example.test") == ["personal"]


@pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection")
def test_vacation_answers_a_sender_once_whichever_nodes_deliver(pair: list[Node]):
    a, b = pair
    away = 'require "vacation";\r\nvacation :days 1 :subject "Away" "Back on Monday.";\r\n'
    # Uploaded through both nodes (as a user of per-node scripts would have to): the memory
    # of whom was answered, not the script, is what this test is about.
    _upload(a, "grace@example.test", away)
    _upload(b, "grace@example.test", away)
    for n, node in enumerate((a, b, a, b)):
        _smtp(node, "harry@example.test", "grace@example.test",
              f"From: harry@example.test\r\nTo: grace@example.test\r\nSubject: note {n}\r\n"
              f"Message-ID: <note{n}@example.test>\r\n\r\nx\r\n")  # fmt: skip
    assert wait_for(lambda: len(_subjects(a, "grace@example.test")) == 4, timeout=30)
    assert wait_for(lambda: _subjects(b, "harry@example.test"), timeout=30) == ["Away"]
    time.sleep(1.5)  # a second reply, from the other node, would be in by now
    assert _subjects(a, "harry@example.test") == ["Away"]


def test_mail_submitted_to_one_node_is_signed_with_the_dkim_key_made_on_another(
    pair: list[Node], sink: Sink
):
    """``dkim init`` ran on node A (the fixture); harry submits through node B: the message
    carries both signatures of that key, and they verify against its published records."""
    import dkim

    from txmailhost.mailauth.sharedkeys import SharedKeyStore
    from txmailhost.store.pgstate import SharedState

    a, b = pair
    with smtplib.SMTP(b.host, b.ports["submission"], timeout=30) as s:
        s.login("harry@example.test", PASSWORD)
        s.sendmail("harry@example.test", ["dana@far.test"],
                   "From: harry@example.test\r\nTo: dana@far.test\r\nSubject: signed?\r\n"
                   "Message-ID: <signed@example.test>\r\n\r\nhello\r\n")  # fmt: skip

    def arrived() -> bytes | None:
        with sink.lock:
            found = [m for _, rcpts, m, _ in sink.deliveries if rcpts == ("dana@far.test",)]
        return found[0] if found else None

    message = wait_for(arrived, timeout=30)
    assert message.count(b"DKIM-Signature:") == 2
    state = SharedState(a.dsn)
    try:
        records = {
            f"{k.selector}._domainkey.example.test.".encode(): k.txt_record().encode()
            for k in SharedKeyStore(state).published("example.test")
        }
    finally:
        state.close()
    assert len(records) == 2
    assert dkim.verify(message, dnsfunc=lambda name, timeout=5: records.get(name))
