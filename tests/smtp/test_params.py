"""MAIL/RCPT parameters (smtp/params.py) and xtext (RFC 3461 4): examples and properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txmailhost import xtext
from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.smtp.params import ParameterError, mail_options, rcpt_options

ALL = frozenset({"SIZE", "8BITMIME", "BINARYMIME", "SMTPUTF8", "DSN", "REQUIRETLS"})


def test_every_mail_parameter_becomes_an_option():
    params = {
        "SIZE": "100",
        "BODY": "binarymime",
        "SMTPUTF8": None,
        "RET": "hdrs",
        "ENVID": "QQ+2B1",
        "REQUIRETLS": None,
    }
    assert mail_options(params, ALL, 1000) == MessageOptions(
        body="BINARYMIME", smtputf8=True, ret="HDRS", envid="QQ+1", requiretls=True
    )


@pytest.mark.parametrize(
    "params, offered, code",
    [
        ({"REQUIRETLS": None}, ALL - {"REQUIRETLS"}, 555),  # not offered before TLS
        ({"RET": "FULL"}, frozenset({"SIZE"}), 555),
        ({"BODY": "BINARYMIME"}, ALL - {"BINARYMIME"}, 501),
        ({"ENVID": ""}, ALL, 501),
        ({"ENVID": "x" * 101}, ALL, 501),
        ({"ENVID": "a=b"}, ALL, 501),
        ({"ENVID": "a+0D+0AX-Evil:+20yes"}, ALL, 501),  # CR LF: a field of its own in a DSN
        ({"ENVID": "a+00b"}, ALL, 501),
        ({"ENVID": "a+FFb"}, ALL, 501),  # an octet that isn't UTF-8
        ({"ENVID": "a+C2+85b"}, ALL, 501),  # NEL, a line end to some readers
        ({"RET": None}, ALL, 501),
        ({"SIZE": "2000"}, ALL, 552),
    ],
)
def test_mail_parameters_refused_with_their_code(params, offered, code):
    with pytest.raises(ParameterError) as refused:
        mail_options(params, offered, 1000)
    assert refused.value.reply.code == code


def test_rcpt_notify_and_orcpt():
    got = rcpt_options({"NOTIFY": "delay,success", "ORCPT": "RFC822;a+2Bb@x.test"}, ALL)
    assert got == RecipientOptions(("SUCCESS", "DELAY"), "rfc822;a+b@x.test")
    assert rcpt_options({"ORCPT": "utf-8;j+C3+B6rg@x.test"}, ALL).orcpt == "utf-8;jörg@x.test"
    assert rcpt_options({"NOTIFY": "NEVER"}, ALL).wants("FAILURE") is False
    assert RecipientOptions().wants("FAILURE") and not RecipientOptions().wants("SUCCESS")


@pytest.mark.parametrize(
    "params",
    [
        {"NOTIFY": "NEVER,FAILURE"},
        {"NOTIFY": "SUCCESS,SUCCESS"},
        {"NOTIFY": ""},
        {"NOTIFY": "SOMETIMES"},
        {"ORCPT": "a@x.test"},
        {"ORCPT": ";a@x.test"},
        {"ORCPT": "rfc822;"},
        {"ORCPT": "rfc822;a+0Ab@x.test"},  # a line feed smuggled into a DSN field
        {"ORCPT": "utf-8;x+FFy@x.test"},  # not UTF-8: no report about it could be written
        {"ORCPT": "rfc822;a+7Fb@x.test"},
        {"ORCPT": "utf-8;a+E2+80+A8b@x.test"},  # U+2028
    ],
)
def test_bad_rcpt_parameters_are_501(params):
    with pytest.raises(ParameterError) as refused:
        rcpt_options(params, ALL)
    assert refused.value.reply.code == 501


def test_rcpt_parameters_need_dsn_offered():
    with pytest.raises(ParameterError) as refused:
        rcpt_options({"NOTIFY": "NEVER"}, frozenset())
    assert refused.value.reply.code == 555


@given(st.text())
def test_xtext_round_trips_any_text(text):
    encoded = xtext.encode(text)
    assert encoded.isascii() and "=" not in encoded and " " not in encoded
    assert xtext.decode(encoded) == text


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_xtext_decode_raises_only_value_error(text):
    with contextlib.suppress(ValueError):
        xtext.decode(text)
