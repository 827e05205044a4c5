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

``decode_header`` is ``email.header.decode_header`` in time linear in the value. The
standard library's takes its words off the front of a list one by one, deletes the space
between two encoded words one by one and joins a run of words by ``+=`` on bytes: each
quadratic, so a From: or Subject: of 20,000 encoded words (340 KiB, folded into lines SMTP
takes) took half a second to decode, and a header section of 1 MiB several seconds. Mail
authentication reads the From: on the reactor thread; the spam checks, SEARCH, SORT,
THREAD and Sieve read these fields too. Its results are the standard library's, piece for
piece and error for error (``tests/test_encodedwords.py``).
"""

from __future__ import annotations

import binascii
import email.base64mime
import email.errors
import email.header
import email.quoprimime

from txmailhost import charsets

_ENCODED_WORD = email.header.ecre  # the standard library's own pattern: the same words


def decode_header(header: str) -> list[tuple[bytes | str, str | None]]:
    """``email.header.decode_header(header)`` for a string, in linear time (see the module
    docstring): (bytes, charset) pieces, runs of one charset joined; ``[(header, None)]``
    when it has no encoded word; ``HeaderParseError`` for base64 that doesn't decode."""
    if not _ENCODED_WORD.search(header):
        return [(header, None)]
    words: list[tuple[str, str | None, str | None]] = []  # (text, encoding, charset)
    for line in header.splitlines():
        parts = _ENCODED_WORD.split(line)  # text, then (charset, encoding, word, text)...
        for at in range(0, len(parts), 4):
            unencoded = parts[at].lstrip() if at == 0 else parts[at]
            if unencoded:
                words.append((unencoded, None, None))
            if at + 1 < len(parts):
                words.append((parts[at + 3], parts[at + 2].lower(), parts[at + 1].lower()))
    # White space between two encoded words is dropped (judged on the list as it was).
    dropped = {
        n - 1
        for n in range(2, len(words))
        if words[n][1] and words[n - 2][1] and words[n - 1][0].isspace()
    }
    collapsed: list[tuple[bytes | str, str | None]] = []
    run: list[bytes] = []
    run_charset: str | None = None
    for n, (text, encoding, charset) in enumerate(words):
        if n in dropped:
            continue
        if encoding is None:
            word = bytes(text, "raw-unicode-escape")
        elif encoding == "q":
            word = bytes(email.quoprimime.header_decode(text), "raw-unicode-escape")
        else:  # "b": the pattern allows no other
            padding = len(text) % 4
            if padding:  # Postel's law, as the standard library: missing padding added
                text += "==="[: 4 - padding]
            try:
                word = email.base64mime.decode(text)
            except binascii.Error:
                raise email.errors.HeaderParseError("Base64 decoding error") from None
        if run and charset != run_charset:
            collapsed.append(((b" " if run_charset is None else b"").join(run), run_charset))
            run = []
        run.append(word)
        run_charset = charset
    if run:
        collapsed.append(((b" " if run_charset is None else b"").join(run), run_charset))
    else:  # nothing but white space around a match across lines: as the standard library
        collapsed.append((None, None))  # type: ignore[arg-type]
    return collapsed


def decode_words(value: str) -> str:
    """``value`` (an unfolded header value) with its encoded words decoded; a value the
    standard library can't split into words (a malformed one) is returned as it is."""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
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
