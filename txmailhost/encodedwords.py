"""RFC 2047 encoded words decoded, each in its charset as mail readers read it.

``str(email.header.make_header(email.header.decode_header(value)))`` was how the IMAP
server's SORT, THREAD and SEARCH, the webmail's list and Sieve read a header value. It
decodes each word strictly with the codec of its label, and the callers, rightly, fell back
to the raw value on any error: so one GBK character in a subject labelled ``gb2312``
(``charsets.py``: mail in Chinese routinely has them) left the whole subject as
``=?gb2312?B?...?=`` text, sorted and searched as such. Here each word is decoded through
``charsets.decode`` (the superset the label stands for, errors replaced) and the words are
joined as ``email.header`` joins them: white space between two encoded words dropped (RFC
2047 6.2), kept between an encoded word and plain text.
"""

from __future__ import annotations

import email.errors
import email.header

from txmailhost import charsets


def decode_words(value: str) -> str:
    """``value`` (an unfolded header value) with its encoded words decoded; a value the
    standard library can't split into words (a malformed one) is returned as it is."""
    if "=?" not in value:
        return value
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value
    out: list[str] = []
    last_encoded = False
    last_space = False
    for chunk, label in pieces:
        if isinstance(chunk, str):  # no encoded word at all: decode_header gave it back
            return chunk
        encoded = label is not None and label.lower() not in ("us-ascii", "ascii")
        text = charsets.decode(chunk, label) if label else chunk.decode("utf-8", "replace")
        if out:  # email.header.Header.__str__: a space where a word meets plain text
            has_space = bool(text) and text[0] in " \t"
            if (
                last_encoded
                and not encoded
                and not has_space
                or encoded
                and not last_encoded
                and not last_space
            ):
                out.append(" ")
        last_space = bool(text) and text[-1] in " \t"
        last_encoded = encoded
        out.append(text)
    return "".join(out)
