"""ARC sealing of forwarded mail: the set we add validates with dkimpy's own ARC verifier
and with ours, carries our verdict, and chains onto an existing set."""

from __future__ import annotations

import io

import dkim

from txmailhost.mailauth.bodyhash import split_header
from txmailhost.mailauth.forwarding import Sealer
from txmailhost.mailauth.keys import KeyStore
from txmailhost.mailauth.signing import Signer
from txmailhost.mailauth.verify import authenticate_message

ARRIVED = (
    b"Authentication-Results: mx.fwd.test;\r\n\tspf=pass smtp.mailfrom=a@origin.test;\r\n"
    b"\tdkim=none;\r\n\tdmarc=none header.from=origin.test\r\n"
    b"Return-Path: <a@origin.test>\r\nReceived: from x by mx.fwd.test; Thu, 3 Dec 2026\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=origin.test; s=x; h=from; bh=AAAA; b=AAAA\r\n"
    b"From: a@origin.test\r\nTo: list@fwd.test\r\nSubject: forwarded\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <f@origin.test>\r\n\r\n"
    b"a body  \r\nwith lines\r\n"
)


def _sealer(tmp_path, names) -> Sealer:
    keys = KeyStore(str(tmp_path / "dkim"))
    keys.create("fwd.test", "arc")
    for key in keys.published("fwd.test"):
        names.add(f"{key.selector}._domainkey.fwd.test", "TXT", key.txt_record())
    return Sealer(Signer(keys), "mx.fwd.test")


def test_our_arc_set_validates_with_dkimpy_and_ours(tmp_path, names, resolver):
    arc_set = _sealer(tmp_path, names).arc_set(io.BytesIO(ARRIVED))
    assert arc_set.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test")
    assert b"ARC-Authentication-Results: i=1; mx.fwd.test;" in arc_set
    sealed = arc_set + ARRIVED
    cv, _results, reason = dkim.arc_verify(sealed, dnsfunc=resolver.dkim_txt)
    assert cv == dkim.CV_Pass, reason
    stream = io.BytesIO(sealed)
    header, first = split_header(stream)
    assert authenticate_message(header, first, stream, resolver)[1].result == "pass"
    changed = sealed.replace(b"with lines", b"with other lines")
    assert dkim.arc_verify(changed, dnsfunc=resolver.dkim_txt)[0] == dkim.CV_Fail


def test_a_second_hop_chains_onto_the_first(tmp_path, names, resolver):
    sealer = _sealer(tmp_path, names)
    first = sealer.arc_set(io.BytesIO(ARRIVED)) + ARRIVED
    second_hop = b"Authentication-Results: mx.fwd.test; arc=pass\r\n" + first
    sealed = sealer.arc_set(io.BytesIO(second_hop)) + second_hop
    assert sealed.startswith(b"ARC-Seal: i=2; cv=pass;")
    assert dkim.arc_verify(sealed, dnsfunc=resolver.dkim_txt)[0] == dkim.CV_Pass


def test_no_key_or_no_results_of_ours_means_no_seal(tmp_path, names):
    assert (
        Sealer(Signer(KeyStore(str(tmp_path / "none"))), "mx.fwd.test").arc_set(io.BytesIO(ARRIVED))
        == b""
    )
    other = ARRIVED.replace(
        b"Authentication-Results: mx.fwd.test;", b"Authentication-Results: x.test;"
    )
    assert _sealer(tmp_path, names).arc_set(io.BytesIO(other)) == b""


class RecordingDelivery:
    """The hand-off behind ``ForwardSealing``: what ``submit_bytes`` was given."""

    def __init__(self) -> None:
        self.submitted: list[tuple[object, bytes]] = []

    def submit_bytes(self, envelope, data):
        from twisted.internet.defer import succeed

        self.submitted.append((envelope, data))
        return succeed("queued")


def test_a_sieve_redirect_elsewhere_is_sealed_and_one_kept_here_is_not(tmp_path, names, resolver):
    from tests.support.syncpool import SyncReactor, SyncThreadPool, result
    from txmailhost.delivery.interfaces import Envelope
    from txmailhost.mailauth.forwarding import ForwardSealing
    from txmailhost.routing import Route, RouteKind

    delivery = RecordingDelivery()
    sealing = ForwardSealing(delivery, _sealer(tmp_path, names), SyncReactor(), SyncThreadPool())
    away = Envelope("a@origin.test", (Route(RouteKind.REMOTE, "bob@far.test"),))
    here = Envelope("a@origin.test", (Route(RouteKind.LOCAL, "x@fwd.test", "x@fwd.test"),))
    assert result(sealing.submit_bytes(away, ARRIVED)) == "queued"
    result(sealing.submit_bytes(here, ARRIVED))
    (_, sealed), (_, kept) = delivery.submitted
    assert sealed.startswith(b"ARC-Seal: i=1;") and sealed.endswith(ARRIVED)
    assert dkim.arc_verify(sealed, dnsfunc=resolver.dkim_txt)[0] == dkim.CV_Pass
    assert kept == ARRIVED
    reply = b"From: x@fwd.test\r\nSubject: away\r\n\r\nbrb\r\n"  # a vacation reply: ours
    result(sealing.submit_bytes(away, reply))
    assert delivery.submitted[-1][1] == reply
