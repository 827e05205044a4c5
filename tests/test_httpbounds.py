"""HTTP listeners hold no more than they must (httpbounds.py): a body past the site's limit
closes the connection before it is kept, and a request whose line, headers or body come too
slowly is cut off, however its bytes are spread (slowloris). On a fake clock, over a
string transport: the same channel and request classes the listeners use."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from txmailhost.httpbounds import HEAD_TIMEOUT, BoundedSite


class Page(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def render_GET(self, request):
        return b"ok"

    def render_POST(self, request):
        self.forms.append(dict(request.args))
        return b"posted"


def connect(site: BoundedSite):
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    return channel, transport


def form_head(length: int) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def make(max_body: int = 0, parse_forms: bool = False):
    clock = Clock()
    page = Page()
    site = BoundedSite(page, reactor=clock, timeout=120)
    site.max_body = max_body
    site.parse_forms = parse_forms
    return site, page, clock


def test_a_request_line_sent_a_byte_at_a_time_is_cut_off_at_the_head_timeout():
    site, _, clock = make()
    channel, transport = connect(site)
    for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:  # each byte puts off the idle timeout
        channel.dataReceived(bytes([byte]))
        clock.advance(1.0)
        if transport.disconnecting:
            break
    assert transport.disconnecting
    assert clock.seconds() <= HEAD_TIMEOUT + 1


def test_a_request_in_time_is_answered_and_the_next_one_gets_its_own_deadline():
    site, _, clock = make()
    channel, transport = connect(site)
    clock.advance(HEAD_TIMEOUT - 1)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200") and not transport.disconnecting
    clock.advance(HEAD_TIMEOUT - 1)  # a kept-alive connection: the clock starts again
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_a_body_slower_than_the_least_rate_is_cut_off():
    site, page, clock = make(max_body=100_000, parse_forms=True)
    channel, transport = connect(site)
    channel.dataReceived(form_head(10240) + b"a=")
    for _ in range(50):  # a byte a second: 40 s allowed (30 s + 10 KiB at 1 KiB/s)
        clock.advance(1.0)
        if transport.disconnecting:
            break
        channel.dataReceived(b"x")
    assert transport.disconnecting and not page.forms
    assert 40 <= clock.seconds() <= 42


def test_a_body_past_the_limit_is_answered_413_and_closes_before_it_is_kept():
    site, page, _ = make(max_body=1000, parse_forms=True)
    channel, transport = connect(site)
    channel.dataReceived(form_head(5000))
    assert transport.disconnecting and not page.forms
    assert transport.value().startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def test_a_chunked_body_past_the_limit_closes_as_it_arrives():
    site, page, _ = make(max_body=1000, parse_forms=True)
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        channel.dataReceived(b"200\r\n" + b"x" * 0x200 + b"\r\n")
    assert transport.disconnecting and not page.forms


def test_a_site_that_reads_no_body_refuses_any():
    site, page, _ = make()  # the redirect and metrics listeners: max_body 0
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    assert transport.disconnecting and not page.forms


def test_a_refused_body_arriving_after_the_head_is_ignored_not_rendered():
    """curl sends the head and the body in two writes: the body's octets, read before the
    connection closes, completed a request that had nothing to hold them (an unhandled
    AttributeError logged for every such POST to the port-80 redirect)."""
    site, page, _ = make()
    channel, transport = connect(site)
    channel.dataReceived(form_head(3))
    channel.dataReceived(b"x=1GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.disconnecting and not page.forms
    assert transport.value().count(b"HTTP/1.1") == 1  # the 413, and nothing rendered after it


def test_a_small_form_within_the_limit_is_parsed_where_the_site_parses_forms():
    site, page, _ = make(max_body=1000, parse_forms=True)
    channel, transport = connect(site)
    channel.dataReceived(form_head(3) + b"a=b")
    assert page.forms == [{b"a": [b"b"]}] and b"posted" in transport.value()


def test_a_pipelined_request_being_answered_is_not_cut_off_by_the_next_head_deadline():
    """Two requests in one write: the second is read when the first is done, and is being
    answered (an event stream lasts minutes): no head deadline may run meanwhile."""
    from twisted.web.server import NOT_DONE_YET

    site, page, clock = make()
    held = []
    page.render_GET = lambda request: held.append(request) or NOT_DONE_YET
    channel, transport = connect(site)
    channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    held[0].write(b"a")
    held[0].finish()  # the second is read now, and held open
    assert len(held) == 2
    clock.advance(HEAD_TIMEOUT * 10)
    assert not transport.disconnecting
    held[1].finish()
    clock.advance(HEAD_TIMEOUT + 1)  # then the connection waits for a next request in time
    assert transport.disconnecting


def test_an_http11_request_needs_exactly_one_host():
    """RFC 9112 3.2: none, or two (the redirect listener built its Location from the last),
    is a 400; HTTP/1.0 may go without."""
    site, _, _ = make()
    for head in (
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: evil.test\r\n\r\n",
    ):
        channel, transport = connect(site)
        channel.dataReceived(head)
        assert transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"), head
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.0 200 OK\r\n")


def test_a_target_in_absolute_form_is_served_as_its_path():
    """RFC 9112 3.2.2: a server MUST accept it; its authority is the request's Host."""
    site, page, _ = make()
    seen = []
    page.render_GET = lambda request: (
        seen.append((request.path, request.uri, request.getHeader(b"host"))) or b"ok"
    )  # noqa: E501
    channel, transport = connect(site)
    channel.dataReceived(b"GET https://mail.example.test/a/b?c=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen == [(b"/a/b", b"/a/b?c=1", b"mail.example.test")]


def test_an_over_long_request_line_or_field_is_answered_414_or_431():
    """LineReceiver closed the connection without a word."""
    site, _, _ = make()
    for head, status in ((b"GET /" + b"a" * 17000, b"414"),
                         (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000, b"431")):  # fmt: skip
        channel, transport = connect(site)
        channel.dataReceived(head + b"\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 " + status), status
        assert transport.disconnecting
