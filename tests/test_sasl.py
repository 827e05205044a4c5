"""The SASL decoding shared by SMTP, POP3 and IMAP."""

import pytest

from txmailhost.sasl import SASLError, decode_response, parse_plain


def test_plain_response_decodes_to_user_and_password():
    assert parse_plain(decode_response(b"AGFAYi50AHB3")) == (b"a@b.t", b"pw")
    assert parse_plain(b"A@B.T\0a@b.t\0pw") == (b"a@b.t", b"pw")
    assert decode_response(b"=") == b""


@pytest.mark.parametrize(
    "response, reason",
    [(b"!!", "base64"), (b"bm9udWxz", "malformed"), (b"AAA=", "malformed")],
)
def test_unusable_responses_say_why(response, reason):
    with pytest.raises(SASLError) as error:
        parse_plain(decode_response(response))
    assert error.value.reason == reason


def test_another_authorization_identity_is_refused():
    with pytest.raises(SASLError) as error:
        parse_plain(b"bob@b.t\0a@b.t\0pw")
    assert error.value.reason == "authzid"
