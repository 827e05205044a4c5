"""rspamd over its HTTP protocol, against Debian's real rspamd started here on a free loopback
port (tests/support/rspamd.py: no Redis, no network); skipped without rspamd. GTUBE is the
test string rspamd knows, as EICAR is ClamAV's. The unavailable paths and what is sent need
no rspamd: a port where nothing listens, one that never answers, and a recording HTTP server.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import io
import re
import socket
import threading
import time

import pytest

from tests.support.fake_engine import trickle
from tests.support.rspamd import GTUBE, free_port, running_rspamd
from txmailhost.filters.interfaces import Action, Client, Transaction
from txmailhost.filters.registry import FilterConfigError, build_chain
from txmailhost.ops import metrics
from txmailhost.spam.rspamd import RspamdClient, RspamdError, RspamdFilter, parse_reply
from txmailhost.spam.scoring import SpamFilter

HAM = (  # dated now: a fixed date becomes rspamd's DATE_IN_PAST a day later
    b"From: Carol <carol@example.org>\r\nTo: b@example.test\r\n"
    b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
    b"Message-ID: <lunch-1@example.org>\r\n"
    b"Subject: lunch\r\n\r\nShall we meet at noon?\r\n"
)
OUTSIDE = Client("192.0.2.1", helo="mail.example.org", listener="smtp")
ENVELOPE = Transaction("carol@example.org", ("b@example.test",), "Q1")


@pytest.fixture(scope="module")
def rspamd_url():
    with running_rspamd() as url:
        yield url


def judge(f, message: bytes, client: Client = OUTSIDE, envelope: Transaction = ENVELOPE):
    return f.end_of_data(client, envelope, io.BytesIO(message))


def fields(verdict) -> dict[str, str]:
    return dict(verdict.headers)


def test_gtube_is_refused_by_rspamd_s_verdict(rspamd_url):
    verdict = judge(RspamdFilter(url=rspamd_url, timeout=30), HAM + GTUBE + b"\r\n")
    assert verdict.action is Action.REJECT
    assert "Gtube pattern" in verdict.reason


def test_gtube_goes_to_junk_when_rspamd_may_not_refuse(rspamd_url):
    f = RspamdFilter(url=rspamd_url, timeout=30, reject=False)
    verdict = judge(f, HAM + GTUBE + b"\r\n")
    assert verdict.action is Action.JUNK
    assert fields(verdict)["X-Spam-Rspamd"].startswith('action="reject" score=15.0 ')
    assert "GTUBE" in fields(verdict)["X-Spam-Rspamd"]


def test_a_plain_message_is_ham_to_rspamd_and_the_envelope_reached_it(rspamd_url):
    verdict = judge(RspamdFilter(url=rspamd_url, timeout=30), HAM)
    assert verdict.action is Action.ACCEPT
    note = fields(verdict)["X-Spam-Rspamd"]
    assert note.startswith('action="no action" score=0.0 required=15.0')
    # symbols rspamd can only show when it got the envelope's From and Rcpt
    assert "FROM_EQ_ENVFROM" in note and "TO_MATCH_ENVRCPT_ALL" in note


def test_rspamd_s_rules_score_a_message_without_date_or_message_id(rspamd_url):
    bare = b"Subject: hi\r\n\r\nbuy now\r\n"
    verdict = judge(RspamdFilter(url=rspamd_url, timeout=30), bare)
    assert verdict.action is Action.JUNK  # stock scores: MISSING_MID, MISSING_DATE, ... > 6
    assert "MISSING_MID(2.5)" in fields(verdict)["X-Spam-Rspamd"]


def test_the_spam_score_adds_rspamd_s_weighted_score_gtube_is_spam(rspamd_url):
    f = SpamFilter(rspamd=rspamd_url, rspamd_weight=0.5, rspamd_timeout=30)
    verdict = judge(f, HAM + GTUBE + b"\r\n")
    assert verdict.action is Action.JUNK
    status = fields(verdict)["X-Spam-Status"]
    assert status.startswith("Yes, score=7.5 ") and "RSPAMD" in status
    assert ' 7.5 RSPAMD               rspamd: action="reject"' in fields(verdict)["X-Spam-Report"]
    assert "X-Spam-Rspamd" not in fields(verdict)


def test_the_spam_score_with_rspamd_keeps_a_plain_message_ham(rspamd_url):
    verdict = judge(SpamFilter(rspamd=rspamd_url, rspamd_timeout=30), HAM)
    assert verdict.action is Action.ACCEPT
    assert fields(verdict)["X-Spam-Status"].startswith("No, score=")
    assert "RSPAMD" in fields(verdict)["X-Spam-Report"]


def test_rspamd_down_fails_open_with_a_note_and_is_counted():
    before = metrics.ENGINE_FAILURES.labels("rspamd", "down")._value.get()
    f = SpamFilter(rspamd=f"http://127.0.0.1:{free_port()}", rspamd_timeout=5)
    verdict = judge(f, HAM + GTUBE + b"\r\n")
    assert verdict.action is Action.ACCEPT  # our own rules don't know GTUBE
    note = fields(verdict)["X-Spam-Rspamd"]
    assert note.startswith("unavailable (ConnectionRefusedError") and "not in the score" in note
    assert "RSPAMD" not in fields(verdict)["X-Spam-Status"]
    assert f.rspamd.failures == 1
    assert metrics.ENGINE_FAILURES.labels("rspamd", "down")._value.get() == before + 1


def test_after_a_failure_rspamd_is_not_asked_until_retry_after():
    now = [100.0]
    client = RspamdClient(f"http://127.0.0.1:{free_port()}", timeout=5, retry_after=30,
                          clock=lambda: now[0])  # fmt: skip
    f = RspamdFilter(url=client.url)
    f.client = client
    assert "ConnectionRefusedError" in fields(judge(f, HAM))["X-Spam-Rspamd"]
    now[0] += 29
    assert fields(judge(f, HAM))["X-Spam-Rspamd"] == (
        "unavailable (skipped after a recent failure)"
    )
    now[0] += 2
    assert "ConnectionRefusedError" in fields(judge(f, HAM))["X-Spam-Rspamd"]
    assert client.failures == 3


def test_an_rspamd_that_never_answers_is_given_up_after_its_timeout():
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        f = RspamdFilter(url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        verdict = judge(f, HAM)
    assert verdict.action is Action.ACCEPT
    assert fields(verdict)["X-Spam-Rspamd"].startswith("unavailable (no answer within 0.5s")


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []
    reply = b'{"score": 3.0, "required_score": 15.0, "action": "greylist", "symbols": {}}'

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, list(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_the_envelope_goes_in_rspamd_s_header_fields(recorder):
    url, seen = recorder
    client = Client("192.0.2.1", reverse_name="mail.example.org", helo="mail.example.org")
    envelope = Transaction("carol@example.org", ("b@example.test", "c@example.test"), "Q7")
    verdict = judge(RspamdFilter(url=url), HAM, client, envelope)
    assert verdict.action is Action.ACCEPT  # rspamd's greylist: ours does that, if configured
    ((path, headers, body),) = seen
    assert path == "/checkv2" and body == HAM
    sent = [(name, value) for name, value in headers if name != "Host"]
    assert sent[:7] == [("IP", "192.0.2.1"), ("From", "carol@example.org"),
                        ("Rcpt", "b@example.test"), ("Rcpt", "c@example.test"),
                        ("Helo", "mail.example.org"), ("Hostname", "mail.example.org"),
                        ("Queue-Id", "Q7")]  # fmt: skip
    assert ("Content-Length", str(len(HAM))) in sent


def test_the_null_sender_sends_no_from(recorder):
    url, seen = recorder
    judge(RspamdFilter(url=url), HAM, envelope=Transaction(None, ("b@example.test",), "Q8"))
    ((_path, headers, _body),) = seen
    assert "From" not in dict(headers)


def test_a_message_over_the_size_budget_is_not_sent(recorder):
    url, seen = recorder
    f = SpamFilter(rspamd=url, rspamd_max_size_kib=1)
    big = HAM + b"x" * 2048 + b"\r\n"
    verdict = judge(f, big)
    assert seen == []
    assert fields(verdict)["X-Spam-Rspamd"] == "skipped (larger than 1 KiB)"
    assert fields(verdict)["X-Spam-Status"].startswith("No, ")


def test_the_spam_score_still_reads_the_whole_sample_after_rspamd(recorder):
    url, seen = recorder
    shortener = HAM.replace(b"noon?", b"noon? https://bit.ly/abc")
    verdict = judge(SpamFilter(rspamd=url), shortener)
    assert "URL_SHORTENER" in fields(verdict)["X-Spam-Status"]
    assert "RSPAMD" in fields(verdict)["X-Spam-Status"]  # 3.0 from the recorder's reply
    assert seen[0][2] == shortener


def test_authenticated_mail_is_not_sent_to_rspamd(recorder):
    url, seen = recorder
    judge(RspamdFilter(url=url), HAM, Client("192.0.2.1", authenticated_as="bob@example.test"))
    assert seen == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"score": 1, "required_score": 15, "action": "explode"}',
        b"[1]",
        b'{"score": "high", "required_score": 15, "action": "no action"}',
        # Python's JSON reads these; a NaN score made every total NaN, never Junk nor refused
        b'{"score": NaN, "required_score": 15, "action": "no action"}',
        b'{"score": -Infinity, "required_score": 15, "action": "no action"}',
        b'{"score": 1, "required_score": Infinity, "action": "no action"}',
        b'{"score": 1, "required_score": 15, "action": "no action", "symbols": {"A": {"score": NaN}}}',
    ],
)
def test_a_reply_that_is_not_checkv2_s_is_an_error(body):
    with pytest.raises(RspamdError):
        parse_reply(body)


def test_rspamd_is_a_builtin_filter_and_its_url_is_checked():
    chain = build_chain(("rspamd",), {"rspamd": {"url": "http://127.0.0.1:11333"}},
                        None, None, 5, "tempfail")  # fmt: skip
    assert [f.name for f in chain.filters] == ["rspamd"]
    with pytest.raises(FilterConfigError, match="http://HOST:PORT"):
        build_chain(("rspamd",), {"rspamd": {"url": "unix:/run/rspamd.sock"}},
                    None, None, 5, "tempfail")  # fmt: skip


def test_a_nan_from_rspamd_does_not_wipe_out_our_own_score(monkeypatch):
    """rspamd as one score among ours: a NaN made the whole total NaN, so spam by our own
    rules was neither Junk nor refused. It is now rspamd failing: our score stands alone."""
    nan = b'{"score": NaN, "required_score": 15.0, "action": "no action"}'
    monkeypatch.setattr(RspamdClient, "_ask", lambda self, copy, size, envelope: parse_reply(nan))
    spam = (
        b"From: deals@promo.example\r\nSubject: CHEAP WATCHES BUY NOW!!!\r\n\r\n"
        b"Buy now: cheap replica watches, lowest price!!! http://bit.ly/x\r\n"
    )
    verdict = judge(SpamFilter(rspamd="http://127.0.0.1:11333", dns_checks=False), spam)
    assert verdict.action is Action.JUNK
    assert fields(verdict)["X-Spam-Rspamd"].startswith("unavailable")


class _PairEnd(socket.socket):
    """One end of a socket pair where http.client expects a TCP connection (it sets
    TCP_NODELAY, which a UNIX socket refuses)."""

    def setsockopt(self, *args) -> None:
        pass


@pytest.fixture
def paired(monkeypatch):
    """An rspamd over a socket pair (no port): ``serve(reply, every)`` answers the next
    connection's request with ``reply``, an octet every ``every`` seconds when given;
    the requests it read are in the list returned."""
    requests: list[bytes] = []
    threads = []

    def serve(reply: bytes, every: float = 0.0) -> list[bytes]:
        ours, theirs = socket.socketpair()
        end = _PairEnd(ours.family, ours.type, ours.proto, fileno=ours.detach())
        monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: end)

        def answer() -> None:
            with theirs:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += theirs.recv(65536)
                head = data.partition(b"\r\n\r\n")[0]
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])
                while len(data) < len(head) + 4 + length:  # all of it, as rspamd reads it
                    data += theirs.recv(65536)
                requests.append(data)
                with contextlib.suppress(OSError):
                    if every:
                        trickle(theirs, reply, every)
                    else:
                        theirs.sendall(reply)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        threads.append(thread)
        return requests

    yield serve
    for thread in threads:
        thread.join(timeout=10)


def http_reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


NO_ACTION = http_reply(b'{"score": 1.0, "required_score": 15.0, "action": "no action"}')


def test_an_rspamd_trickling_its_reply_is_given_up_on_within_the_timeout(paired):
    """``timeout`` is for the whole exchange: http.client's reads each got the full socket
    timeout, so a reply trickled an octet every 50 ms took 6 s with ``timeout = 1`` (and a
    slower one as long as it liked, holding a filter thread)."""
    paired(NO_ACTION, every=0.05)
    f = RspamdFilter(url="http://127.0.0.1:11333", timeout=1)
    started = time.monotonic()
    verdict = judge(f, HAM)
    took = time.monotonic() - started
    assert fields(verdict)["X-Spam-Rspamd"].startswith("unavailable (no answer within 1s")
    assert took < 2.5


def test_an_smtputf8_envelope_goes_to_rspamd_in_utf8(paired):
    """A recipient outside Latin-1 made http.client raise, the filter failed, and the
    message got the chain's 451 at every attempt: never delivered while rspamd was asked."""
    requests = paired(NO_ACTION)
    envelope = Transaction("jörg@例え.jp", ("日本@example.jp",), "Q9")
    client = Client("192.0.2.1", helo="mail.example.org\x00evil", listener="smtp")
    verdict = judge(RspamdFilter(url="http://127.0.0.1:11333"), HAM, client, envelope)
    assert verdict.action is Action.ACCEPT
    assert fields(verdict)["X-Spam-Rspamd"].startswith('action="no action"')
    (request,) = requests
    assert "Rcpt: 日本@example.jp\r\n".encode() in request
    assert "From: jörg@例え.jp\r\n".encode() in request
    assert b"Helo:" not in request  # a control character: left out, never passed on
